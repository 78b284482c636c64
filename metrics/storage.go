package metrics

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// storageCollector reports keel's own storage engine (Pebble) health, read
// at scrape time from one pebble.Metrics: what an operator watches to see
// compactions keep up (keel_storage_*; etcd's bbolt has no equivalent).
type storageCollector struct {
	m     *Metrics
	descs []storageDesc
}

type storageDesc struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*pebble.Metrics) float64
}

func newStorageCollector(m *Metrics) prometheus.Collector {
	d := func(name, help string, typ prometheus.ValueType, f func(*pebble.Metrics) float64) storageDesc {
		return storageDesc{prometheus.NewDesc("keel_storage_"+name, help, nil, nil), typ, f}
	}
	g, c := prometheus.GaugeValue, prometheus.CounterValue
	return &storageCollector{m: m, descs: []storageDesc{
		d("read_amplification", "Sorted runs a point read may have to look at (L0 sublevels plus non-empty levels).", g,
			func(p *pebble.Metrics) float64 { return float64(p.ReadAmp()) }),
		d("compaction_debt_bytes", "Bytes compactions must still rewrite to bring the LSM into shape.", g,
			func(p *pebble.Metrics) float64 { return float64(p.Compact.EstimatedDebt) }),
		d("compactions_in_progress", "Compactions running now.", g,
			func(p *pebble.Metrics) float64 { return float64(p.Compact.NumInProgress) }),
		d("compactions_total", "Compactions since the database was opened.", c,
			func(p *pebble.Metrics) float64 { return float64(p.Compact.Count) }),
		d("flushes_total", "Memtable flushes since the database was opened.", c,
			func(p *pebble.Metrics) float64 { return float64(p.Flush.Count) }),
		d("memtable_bytes", "Bytes held by memtables.", g,
			func(p *pebble.Metrics) float64 { return float64(p.MemTable.Size) }),
		d("tables_bytes", "Bytes of the live sstables.", g,
			func(p *pebble.Metrics) float64 { return float64(p.Total().TablesSize) }),
		d("wal_bytes", "Bytes of live data in the write-ahead log.", g,
			func(p *pebble.Metrics) float64 { return float64(p.WAL.Size) }),
		d("block_cache_bytes", "Bytes held by the block cache.", g,
			func(p *pebble.Metrics) float64 { return float64(p.BlockCache.Size) }),
		d("block_cache_hits_total", "Block cache hits.", c,
			func(p *pebble.Metrics) float64 { return float64(p.BlockCache.Hits) }),
		d("block_cache_misses_total", "Block cache misses.", c,
			func(p *pebble.Metrics) float64 { return float64(p.BlockCache.Misses) }),
	}}
}

func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.desc
	}
}

func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.state.Load()
	if s == nil || s.Storage == nil {
		return
	}
	pm := s.Storage()
	if pm == nil {
		return
	}
	for _, d := range c.descs {
		ch <- prometheus.MustNewConstMetric(d.desc, d.typ, d.value(pm))
	}
}
