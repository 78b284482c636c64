package proc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Launch starts the member's process again after Kill or Stop, with the same
// flags and data dir, and returns at once with the instant the process was
// started; it does not wait for the member to serve. Follow it with
// WaitHealthy to time the start-up, then WaitServing. (Restart is Launch
// plus WaitServing.)
func (m *Member) Launch() (time.Time, error) {
	if exited, _ := m.Exited(); !exited {
		return time.Time{}, fmt.Errorf("%s %s is still running", m.Kind, m.Name)
	}
	started := time.Now()
	if err := m.start(); err != nil {
		return time.Time{}, err
	}
	return started, nil
}

// WaitHealthy polls endpoint/health every interval until it answers 200 OK
// with etcd's body {"health":"true"}, and returns the instant that answer
// arrived; the figure it gives is therefore late by at most one interval
// plus one request. It fails when exited is closed first (the server died;
// pass the member's Done), when ctx ends, or after timeout.
func WaitHealthy(ctx context.Context, endpoint string, exited <-chan struct{}, interval, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		at, err := healthOK(ctx, endpoint)
		if err == nil {
			return at, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s/health not ok after %v: %w", endpoint, timeout, err)
		}
		select {
		case <-exited:
			return time.Time{}, fmt.Errorf("the server at %s exited before /health was ok (last answer: %v)", endpoint, err)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// healthOK makes one /health request and returns the instant of a healthy
// answer, or why the answer was not one.
func healthOK(ctx context.Context, endpoint string) (time.Time, error) {
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(c, http.MethodGet, endpoint+"/health", nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	at := time.Now()
	if err != nil {
		return time.Time{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("/health: %s %s", resp.Status, body)
	}
	var h struct {
		Health string `json:"health"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.Health != "true" {
		return time.Time{}, fmt.Errorf("/health: 200 OK but body %q", body)
	}
	return at, nil
}
