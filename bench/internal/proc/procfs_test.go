package proc

import (
	"os"
	"testing"
)

func TestReadMemoryOfSelfReportsResidentPages(t *testing.T) {
	m, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS || m.Anon <= 0 || m.File <= 0 {
		t.Errorf("implausible memory of a running Go process: %+v", m)
	}
}

func TestReadCPUOfSelfNeverDecreases(t *testing.T) {
	a, err := ReadCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ReadCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if a < 0 || b < a {
		t.Errorf("CPU time went from %v to %v", a, b)
	}
}

func TestReadMemoryOfAMissingProcessFails(t *testing.T) {
	// pid_max is at most 2^22 on Linux.
	if _, err := ReadMemory(1 << 23); err == nil {
		t.Error("no error for a process that cannot exist")
	}
}
