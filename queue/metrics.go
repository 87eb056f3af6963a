package queue

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	enqueued        prometheus.Counter
	delivered       prometheus.Counter
	failed          prometheus.Counter
	refused         prometheus.Counter
	retries         prometheus.Counter
	latency         prometheus.Histogram
	upstreamSeconds prometheus.Histogram
	commitSeconds   prometheus.Histogram
	deadDropped     *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "courier_queue_enqueued_total", Help: "Items made durable in the queue."}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "courier_queue_delivered_total", Help: "Items accepted upstream and removed from the queue."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "courier_queue_failed_total", Help: "Items moved to failed (dead letter)."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "courier_queue_refused_total", Help: "Enqueue requests refused because a quota was reached."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "courier_queue_delivery_retries_total", Help: "Delivery attempts that failed and will be retried."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "courier_queue_delivery_latency_seconds", Help: "Time from enqueue to acceptance upstream, per item.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}),
		upstreamSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "courier_queue_upstream_request_seconds", Help: "Duration of one delivery attempt of a batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "courier_queue_commit_seconds", Help: "Duration of one group commit (write and fsync).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 3, 12)}),
		deadDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "courier_queue_dead_letters_dropped_total",
			Help: "Dead letters dropped, by why: quota (queue.max_failed_bytes), age (queue.max_failed_age) or purge (an operator)."},
			[]string{"reason"}),
	}
}

func (m *metrics) register(reg prometheus.Registerer, q *Queue, topKeys int) {
	if reg == nil {
		return
	}
	for _, r := range []string{"quota", "age", "purge"} {
		m.deadDropped.WithLabelValues(r) // a zero to rate() from
	}
	if topKeys <= 0 {
		topKeys = defaultMetricsKeys
	}
	reg.MustRegister(m.enqueued, m.delivered, m.failed, m.refused, m.retries, m.latency, m.upstreamSeconds, m.commitSeconds, m.deadDropped,
		&depthCollector{q: q, top: topKeys})
}

// defaultMetricsKeys is Options.MetricsKeys when unset.
const defaultMetricsKeys = 20

// otherKeys labels the sum of every key outside the top N.
const otherKeys = "other"

var (
	depthDesc = prometheus.NewDesc("courier_queue_items", "Items in the queue by routing key and state; keys outside the top N by pending are summed under routing_key=\"other\".",
		[]string{"routing_key", "state"}, nil)
	depthBytesDesc = prometheus.NewDesc("courier_queue_bytes", "Bytes in the queue by routing key and state; keys outside the top N by pending are summed under routing_key=\"other\".",
		[]string{"routing_key", "state"}, nil)
	keysDesc   = prometheus.NewDesc("courier_queue_routing_keys", "Routing keys with something pending, delivering, failed or delivered in the last hour.", nil, nil)
	oldestDesc = prometheus.NewDesc("courier_queue_oldest_pending_seconds", "Age of the oldest pending item.", nil, nil)
	diskDesc   = prometheus.NewDesc("courier_queue_disk_bytes", "Bytes the queue store uses on disk.", nil, nil)
)

// depthCollector reads the depth at scrape time from the queue actor, so
// the numbers are those of one consistent snapshot.
//
// Cardinality is bounded: only the top keys by pending get series of their
// own. A scrape must never fail, and promhttp fails the whole scrape on a
// duplicate series or a label that is not UTF-8, so labels are made valid
// and keys whose labels coincide (KeyLabel is a redaction) are summed.
type depthCollector struct {
	q   *Queue
	top int
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthDesc
	ch <- depthBytesDesc
	ch <- keysDesc
	ch <- oldestDesc
	ch <- diskDesc
}

type depth struct {
	pending, delivering, failed, pendingBytes, failedBytes int64
}

func (d *depth) add(k KeyStatus) {
	d.pending += k.Pending
	d.delivering += k.Delivering
	d.failed += k.Failed
	d.pendingBytes += k.PendingBytes
	d.failedBytes += k.FailedBytes
}

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	if c.q.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := c.q.Status(ctx)
	if err != nil {
		return
	}
	keys := slices.Clone(s.Keys)
	slices.SortFunc(keys, func(x, y KeyStatus) int {
		return cmp.Or(cmp.Compare(y.Pending, x.Pending), cmp.Compare(y.Failed, x.Failed), strings.Compare(x.Key, y.Key))
	})
	byLabel := map[string]*depth{}
	var order []string
	for i, k := range keys {
		l := otherKeys
		if i < c.top {
			l = strings.ToValidUTF8(c.q.keyLabel(k.Key), "\uFFFD")
			if l == otherKeys {
				l = "key:" + otherKeys // a queue key named "other" stays apart from the sum
			}
		}
		d, ok := byLabel[l]
		if !ok {
			d = &depth{}
			byLabel[l] = d
			order = append(order, l)
		}
		d.add(k)
	}
	if _, ok := byLabel[otherKeys]; !ok {
		// Always there, zero or not, so that a dashboard's sum is stable.
		byLabel[otherKeys] = &depth{}
		order = append(order, otherKeys)
	}
	emit := func(desc *prometheus.Desc, v int64, labels ...string) {
		if m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, float64(v), labels...); err == nil {
			ch <- m
		}
	}
	for _, l := range order {
		d := byLabel[l]
		emit(depthDesc, d.pending, l, "pending")
		emit(depthDesc, d.delivering, l, "delivering")
		emit(depthDesc, d.failed, l, "failed")
		emit(depthBytesDesc, d.pendingBytes, l, "pending")
		emit(depthBytesDesc, d.failedBytes, l, "failed")
	}
	emit(keysDesc, int64(len(keys)))
	if m, err := prometheus.NewConstMetric(oldestDesc, prometheus.GaugeValue, s.OldestPendingS); err == nil {
		ch <- m
	}
	emit(diskDesc, s.DiskBytes)
}
