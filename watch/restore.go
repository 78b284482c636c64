package watch

// Restore resynchronizes the hub with its store after the store's state was
// replaced by a Raft snapshot (mvcc.Store.Reload), which moves the store
// ahead by many revisions at once without their changes passing through
// Notify. As etcd does, every synced watcher becomes unsynced and the syncer
// catches it up from the store's by-revision log from the revision it waits
// for; a watcher whose revision the new state has compacted is cancelled
// with the compacted revision. The window of recent changes is emptied (it
// ends at a revision the hub no longer follows from), and the hub continues
// from the store's new revision. Watchers waiting for a future revision stay
// waiting for it.
//
// Apply loop only: after the store's Reload and before the next Notify.
func (h *Hub) Restore() {
	rev := h.store.Rev()
	h.mu.Lock()
	defer h.mu.Unlock()
	var ws []*watcher
	for _, set := range h.synced.keys {
		for w := range set {
			ws = append(ws, w)
		}
	}
	for _, rw := range h.synced.ranges {
		for w := range rw.watchers {
			ws = append(ws, w)
		}
	}
	h.synced = newGroup()
	for _, w := range ws {
		w.synced = false
		h.unsynced[w] = struct{}{}
	}
	h.recent, h.recentSize = nil, 0
	h.recentFrom = rev + 1
	h.notified = rev
	h.wakeSyncer()
}
