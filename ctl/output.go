package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
	"google.golang.org/protobuf/proto"
)

// The output formats of -w/--write-out.
const (
	formatSimple   = "simple"
	formatJSON     = "json"
	formatTable    = "table"
	formatFields   = "fields"
	formatProtobuf = "protobuf"
)

// printer writes a command's result in the format -w asks for. Each command
// family adds its own methods (printer.get, printer.memberList, ...) in its
// file; the generic parts are here.
type printer struct {
	format string
	hex    bool
	w      io.Writer
}

// printer is the printer for -w. etcdctl checks -w last in building its
// connection settings, so this builds them (clientSpec), which may prompt
// for a password.
func (g *globals) printer() (*printer, error) {
	if _, err := g.clientSpec(); err != nil {
		return nil, err
	}
	return &printer{format: g.writeOut, hex: g.hex, w: g.stdio.Out}, nil
}

// unsupported is the error of a command that has no printer for the format.
func (p *printer) unsupported() error {
	return withCode(ExitBadFeature, fmt.Errorf("%s not supported as output format", p.format))
}

// printf writes to the output; write errors are ignored, as a closed pipe
// ends keelctl anyway.
func (p *printer) printf(format string, a ...any) { fmt.Fprintf(p.w, format, a...) }

func (p *printer) println(a ...any) { fmt.Fprintln(p.w, a...) }

// json prints v as one line of JSON. Responses are printed with
// encoding/json, as etcdctl does: field names from the protobuf json tags,
// 64-bit integers as numbers, bytes in base64.
func (p *printer) json(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	p.println(string(b))
	return nil
}

// protobuf writes m's wire encoding, with no separator.
func (p *printer) protobuf(m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	_, err = p.w.Write(b)
	return err
}

// response prints resp as it is in the json and protobuf formats; the other
// formats are not supported, as in etcdctl. It is the json and protobuf
// output of the commands that print their request's response (get, put,
// del, alarm, move-leader, auth, user, role).
func (p *printer) response(resp proto.Message) error {
	switch p.format {
	case formatJSON:
		return p.json(resp)
	case formatProtobuf:
		return p.protobuf(resp)
	}
	return p.unsupported()
}

// str renders a key or value for the simple and fields formats: as is, or as
// \xNN escapes for --hex.
func (p *printer) str(b []byte) string {
	if !p.hex {
		return string(b)
	}
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "\\x%02x", c)
	}
	return sb.String()
}

// id renders a member or cluster ID: decimal, or hexadecimal with --hex.
func (p *printer) id(id uint64) string {
	if p.hex {
		return fmt.Sprintf("%x", id)
	}
	return fmt.Sprint(id)
}

// lease renders a lease ID in the fields format: decimal, or 16 hexadecimal
// digits with --hex.
func (p *printer) lease(id int64) string {
	if p.hex {
		return fmt.Sprintf("%016x", id)
	}
	return fmt.Sprint(id)
}

// rows prints each row on a line of its own, the cells separated by ", ":
// the simple format of the commands that also print a table.
func (p *printer) rows(rows [][]string) {
	for _, row := range rows {
		p.println(strings.Join(row, ", "))
	}
}

// table prints rows under header in the bordered layout etcdctl uses, cells
// aligned right.
func (p *printer) table(header []string, rows [][]string) error {
	cfg := tablewriter.NewConfigBuilder().WithRowAlignment(tw.AlignRight).Build()
	t := tablewriter.NewTable(p.w, tablewriter.WithConfig(cfg))
	t.Header(header)
	if err := t.Bulk(rows); err != nil {
		return err
	}
	return t.Render()
}
