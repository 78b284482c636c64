package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/keeldb/keel/storage"
)

// Save writes a snapshot file of e's state at this moment to w: the state
// is read from one Pebble snapshot (storage.Engine.OpenState), so writes go
// on while the file is written and none of them shows in it. h.Applied is
// set from the state; the rest of h is the caller's. Save stops early, with
// ctx's error, when ctx is done; the bytes written by then are no valid
// file.
func Save(ctx context.Context, e *storage.Engine, w io.Writer, h Header) (Info, error) {
	st, err := e.OpenState()
	if err != nil {
		return Info{}, fmt.Errorf("snapshot: %w", err)
	}
	defer st.Close()
	h.Applied = st.Applied()
	sr, err := storage.NewStateReader(st)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot: %w", err)
	}
	sw, err := NewWriter(w, h)
	if err != nil {
		return Info{}, err
	}
	for n := 0; ; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return Info{}, ctx.Err()
		}
		k, v, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Info{}, fmt.Errorf("snapshot: read the state: %w", err)
		}
		if err := sw.Add(k, v); err != nil {
			return Info{}, err
		}
	}
	return sw.Close()
}
