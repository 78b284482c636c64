package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Before each run the harness waits for the machine to be quiet, so that
// what one run left behind (dirty pages being written back, a server's
// exit, the previous run's garbage) does not land on the next one.
const (
	// idleBusy is the share of all CPUs, 0 to 1, below which the machine
	// counts as idle.
	idleBusy = 0.10
	// idleSample is how long each CPU sample lasts.
	idleSample = 500 * time.Millisecond
	// settleTimeout bounds the wait; the run then starts anyway.
	settleTimeout = 10 * time.Second
)

// settle flushes every file system (sync(2)) and then waits until the
// machine-wide CPU use over idleSample is below idleBusy, at most
// settleTimeout in all or until ctx is done. It never fails: when the
// machine does not go quiet, or /proc/stat cannot be read, it says so on
// progress and returns, and the run goes ahead; a long wait that ended in
// quiet is reported on progress too.
func settle(ctx context.Context, progress *Progress) {
	start := time.Now()
	deadline := start.Add(settleTimeout)
	syscall.Sync()
	busy := -1.0
	for ctx.Err() == nil {
		b, err := machineBusy(ctx, idleSample)
		if err != nil {
			if ctx.Err() == nil {
				progress.Printf("cannot tell whether the machine is idle: %v", err)
			}
			return
		}
		busy = b
		if busy < idleBusy {
			if waited := time.Since(start); waited > 2*idleSample {
				progress.Printf("waited %v for the machine to go idle", waited.Round(100*time.Millisecond))
			}
			return
		}
		if time.Now().Add(idleSample).After(deadline) {
			break
		}
	}
	if ctx.Err() == nil {
		progress.Printf("machine still %.0f%% busy after %v of waiting for it to go idle; starting anyway",
			100*busy, time.Since(start).Round(100*time.Millisecond))
	}
}

// machineBusy is the share of all CPUs' time, 0 to 1, that was not idle
// (idle or waiting for I/O) over the next interval, from /proc/stat.
func machineBusy(ctx context.Context, interval time.Duration) (float64, error) {
	busy0, total0, err := readCPUTimes()
	if err != nil {
		return 0, err
	}
	t := time.NewTimer(interval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.C:
	}
	busy1, total1, err := readCPUTimes()
	if err != nil {
		return 0, err
	}
	if total1 <= total0 {
		return 0, nil
	}
	return float64(busy1-busy0) / float64(total1-total0), nil
}

// readCPUTimes reads the machine's cumulative CPU time, in clock ticks,
// from the "cpu" line of /proc/stat: busy is every state but idle and
// iowait, total includes them.
func readCPUTimes() (busy, total uint64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return 0, 0, err
		}
		return 0, 0, errors.New("/proc/stat is empty")
	}
	return parseCPULine(sc.Text())
}

// parseCPULine parses the aggregate line of /proc/stat,
// "cpu user nice system idle iowait irq softirq steal guest guest_nice".
// guest and guest_nice are already counted in user and nice, so they are
// left out.
func parseCPULine(line string) (busy, total uint64, err error) {
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	for i, f := range fields[1:] {
		if i >= 8 { // guest, guest_nice
			break
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}
