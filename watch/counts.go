package watch

// Counts returns the number of open streams, of watchers on them and of
// those watchers that are behind the store (unsynced), for the metrics.
func (h *Hub) Counts() (streams, watchers, slow int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams), h.synced.n + len(h.unsynced), len(h.unsynced)
}

// PendingEvents returns the number of events queued on streams and not yet
// taken to be sent to their clients.
func (h *Hub) PendingEvents() int64 { return h.pendingEvents.Load() }
