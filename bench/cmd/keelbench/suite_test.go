package main

import (
	"io"
	"testing"
)

// The suite names its scenarios' flags; a flag renamed in a scenario must
// fail here, not an hour into `make bench`.
func TestEverySuiteStepsFlagsParse(t *testing.T) {
	for _, quick := range []bool{false, true} {
		f := suiteFlags{repeat: 3}
		labels := map[string]bool{}
		for _, st := range suiteSteps(quick) {
			if labels[st.label] {
				t.Errorf("quick=%v: two steps labelled %q", quick, st.label)
			}
			labels[st.label] = true
			inv, err := parseInvocation(st.scenario, f.stepArgs(st), io.Discard)
			if err != nil {
				t.Errorf("quick=%v: step %q: %v", quick, st.label, err)
				continue
			}
			if inv.common.repeat < 3 {
				t.Errorf("quick=%v: step %q repeats %d times, want at least 3", quick, st.label, inv.common.repeat)
			}
		}
	}
}

func TestStepsSelectsByLabelOrScenario(t *testing.T) {
	steps := suiteSteps(true)
	got, err := selectSteps(steps, "^put, 1 client|lease-keepalive")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].label != "put, 1 client / 1 conn" || got[1].scenario != "lease-keepalive" {
		t.Errorf("selected %v", got)
	}
	if _, err := selectSteps(steps, "no such step"); err == nil {
		t.Error("a pattern that matches nothing is accepted")
	}
}

func TestOverrideFlagsComeAfterTheStepsOwn(t *testing.T) {
	var f suiteFlags
	f.repeat = 3
	if err := f.overrides.Set("failover: -repeat=1 -warmup=100ms"); err != nil {
		t.Fatal(err)
	}
	if err := f.overrides.Set("nope: -x"); err == nil {
		t.Error("an override of an unknown scenario is accepted")
	}
	st := suiteStep{scenario: "failover", args: []string{"-members=3", "-repeat=10"}}
	inv, err := parseInvocation(st.scenario, f.stepArgs(st), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if inv.common.repeat != 1 {
		t.Errorf("-repeat = %d, want the override's 1", inv.common.repeat)
	}
}
