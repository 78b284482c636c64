package snapshot

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
)

// checkBoltPages walks the page tree of a bbolt file before bbolt reads
// it. bbolt trusts its pages: a damaged branch element that points back up
// the tree sends its cursors round a cycle forever, and an element that
// claims more bytes than its page reads past it. The walk reads the file
// itself, bounded by its size, and refuses:
//   - a meta page that is not bbolt's (magic, version, checksum);
//   - a page outside the database or the file, or one that does not carry
//     its own id;
//   - a page reached twice (a cycle, or two parents sharing it);
//   - an element, key or value that does not lie within its page;
//   - a tree deeper than any bbolt writes.
//
// The tree walked is the one bbolt opens: that of the valid meta page with
// the higher transaction id (the older one may name pages a transaction
// that never committed has since overwritten).
//
// The layout (bbolt's page.go and node.go): a page starts with a 16-byte
// header (id u64, flags u16, count u16, overflow u32); branch elements are
// (pos u32, ksize u32, child u64), leaf elements (flags u32, pos u32,
// ksize u32, vsize u32), with pos counted from the element itself; a
// bucket's value starts with (root u64, sequence u64), and a root of 0
// means the bucket's single leaf page follows inline in the value.
func checkBoltPages(f *os.File, fileSize int64) error {
	head := make([]byte, boltMinPage+boltMetaLen)
	if _, err := f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("%w: too short for an etcd database: %v", ErrCorrupt, err)
	}
	// bbolt takes its page size from the first meta page or, when that is
	// damaged, from the second, looked for at each power of two from 1 KiB.
	var pageSize int64
	if m, err := parseBoltMeta(head[boltHeaderLen:]); err == nil {
		pageSize = int64(m.pageSize)
	} else {
		b := make([]byte, boltMetaLen)
		for pos := int64(1024); pos <= 1024<<14 && pos < fileSize-1024; pos <<= 1 {
			if _, err := f.ReadAt(b, pos+boltHeaderLen); err != nil {
				break
			}
			if m, err := parseBoltMeta(b); err == nil {
				pageSize = int64(m.pageSize)
				break
			}
		}
		if pageSize == 0 {
			return fmt.Errorf("%w: no valid bbolt meta page", ErrCorrupt)
		}
	}
	if pageSize < boltMinPage || pageSize > boltMaxPage || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("%w: bbolt page size %d", ErrCorrupt, pageSize)
	}
	var m boltMeta
	found := false
	for id := int64(0); id < 2; id++ {
		b := make([]byte, boltMetaLen)
		if _, err := f.ReadAt(b, id*pageSize+boltHeaderLen); err != nil {
			continue
		}
		if mm, err := parseBoltMeta(b); err == nil && (!found || mm.txid > m.txid) {
			m, found = mm, true
		}
	}
	if !found {
		return fmt.Errorf("%w: no valid bbolt meta page", ErrCorrupt)
	}
	if m.highWater < 2 || int64(m.highWater) > fileSize/pageSize {
		return fmt.Errorf("%w: truncated: the etcd database needs %d pages of %d bytes, the file has %d bytes",
			ErrCorrupt, m.highWater, pageSize, fileSize)
	}
	w := &boltWalk{f: f, pageSize: pageSize, high: m.highWater, seen: make([]uint64, (m.highWater+63)/64)}
	if err := w.tree(m.root, 0); err != nil {
		return err
	}
	if m.freelist != boltNoFreelist {
		if _, err := w.page(m.freelist, boltFreelistPage); err != nil {
			return err
		}
	}
	return nil
}

const (
	boltHeaderLen  = 16
	boltElemLen    = 16
	boltMetaLen    = 64
	boltMinPage    = 512
	boltMaxPage    = 16 << 20
	boltVersion    = 2
	boltMaxDepth   = 64
	boltNoFreelist = ^uint64(0)

	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltFreelistPage = 0x10
	boltBucketLeaf   = 0x01
)

type boltMeta struct {
	pageSize  uint32
	root      uint64
	freelist  uint64
	highWater uint64
	txid      uint64
}

func parseBoltMeta(b []byte) (boltMeta, error) {
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != boltMagic || le.Uint32(b[4:]) != boltVersion {
		return boltMeta{}, fmt.Errorf("%w: not a bbolt meta page", ErrCorrupt)
	}
	h := fnv.New64a()
	h.Write(b[:56])
	if h.Sum64() != le.Uint64(b[56:]) {
		return boltMeta{}, fmt.Errorf("%w: bbolt meta page checksum", ErrCorrupt)
	}
	return boltMeta{pageSize: le.Uint32(b[8:]), root: le.Uint64(b[16:]), freelist: le.Uint64(b[32:]),
		highWater: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}, nil
}

type boltWalk struct {
	f        io.ReaderAt
	pageSize int64
	high     uint64
	// seen has a bit for each page of the database, set once the walk
	// has reached it.
	seen []uint64
}

// page reads page id (with its overflow) after checking that it lies in
// the database, carries its id and one of the wanted types (bbolt compares
// a page's flags whole), and is new to the walk.
func (w *boltWalk) page(id uint64, types ...uint16) ([]byte, error) {
	if id < 2 || id >= w.high {
		return nil, fmt.Errorf("%w: bbolt page %d outside the database (%d pages)", ErrCorrupt, id, w.high)
	}
	head := make([]byte, boltHeaderLen)
	if _, err := w.f.ReadAt(head, int64(id)*w.pageSize); err != nil {
		return nil, fmt.Errorf("%w: bbolt page %d: %v", ErrCorrupt, id, err)
	}
	le := binary.LittleEndian
	if got := le.Uint64(head); got != id {
		return nil, fmt.Errorf("%w: bbolt page %d carries id %d", ErrCorrupt, id, got)
	}
	if got := le.Uint16(head[8:]); !slices.Contains(types, got) {
		return nil, fmt.Errorf("%w: bbolt page %d has flags %#x, want one of %#x", ErrCorrupt, id, got, types)
	}
	overflow := uint64(le.Uint32(head[12:]))
	if overflow >= w.high-id {
		return nil, fmt.Errorf("%w: bbolt page %d overflows the database", ErrCorrupt, id)
	}
	for p := id; p <= id+overflow; p++ {
		if w.seen[p/64]&(1<<(p%64)) != 0 {
			return nil, fmt.Errorf("%w: bbolt page %d is reached twice", ErrCorrupt, p)
		}
		w.seen[p/64] |= 1 << (p % 64)
	}
	b := make([]byte, int64(overflow+1)*w.pageSize)
	if _, err := w.f.ReadAt(b, int64(id)*w.pageSize); err != nil {
		return nil, fmt.Errorf("%w: bbolt page %d: %v", ErrCorrupt, id, err)
	}
	return b, nil
}

// tree walks the bucket tree rooted at page id.
func (w *boltWalk) tree(id uint64, depth int) error {
	if depth > boltMaxDepth {
		return fmt.Errorf("%w: bbolt tree deeper than %d", ErrCorrupt, boltMaxDepth)
	}
	b, err := w.page(id, boltBranchPage, boltLeafPage)
	if err != nil {
		return err
	}
	return w.elements(b, id, depth)
}

// elements checks the elements of page b (page id, or inline when id is
// 0) and walks what they point to.
func (w *boltWalk) elements(b []byte, id uint64, depth int) error {
	le := binary.LittleEndian
	flags, count := le.Uint16(b[8:]), int(le.Uint16(b[10:]))
	if boltHeaderLen+count*boltElemLen > len(b) {
		return fmt.Errorf("%w: bbolt page %d: %d elements do not fit", ErrCorrupt, id, count)
	}
	branch := flags == boltBranchPage
	if branch && count == 0 {
		return fmt.Errorf("%w: bbolt branch page %d is empty", ErrCorrupt, id)
	}
	for i := 0; i < count; i++ {
		e := boltHeaderLen + i*boltElemLen
		el := b[e : e+boltElemLen]
		if branch {
			end := uint64(e) + uint64(le.Uint32(el[0:])) + uint64(le.Uint32(el[4:]))
			if end > uint64(len(b)) {
				return fmt.Errorf("%w: bbolt page %d: element %d lies outside the page", ErrCorrupt, id, i)
			}
			if err := w.tree(le.Uint64(el[8:]), depth+1); err != nil {
				return err
			}
			continue
		}
		kstart := uint64(e) + uint64(le.Uint32(el[4:]))
		vstart := kstart + uint64(le.Uint32(el[8:]))
		end := vstart + uint64(le.Uint32(el[12:]))
		if end > uint64(len(b)) {
			return fmt.Errorf("%w: bbolt page %d: element %d lies outside the page", ErrCorrupt, id, i)
		}
		if le.Uint32(el[0:])&boltBucketLeaf == 0 {
			continue
		}
		v := b[vstart:end]
		if len(v) < 16 {
			return fmt.Errorf("%w: bbolt page %d: bucket %d has a short header", ErrCorrupt, id, i)
		}
		if root := le.Uint64(v); root != 0 {
			if err := w.tree(root, depth+1); err != nil {
				return err
			}
			continue
		}
		inline := v[16:]
		if len(inline) < boltHeaderLen || le.Uint16(inline[8:]) != boltLeafPage {
			return fmt.Errorf("%w: bbolt page %d: inline bucket %d is not a leaf", ErrCorrupt, id, i)
		}
		if depth+1 > boltMaxDepth {
			return fmt.Errorf("%w: bbolt tree deeper than %d", ErrCorrupt, boltMaxDepth)
		}
		if err := w.elements(inline, 0, depth+1); err != nil {
			return err
		}
	}
	return nil
}
