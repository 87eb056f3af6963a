package queue

import (
	"context"
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
	}
}

func (m *metrics) register(reg prometheus.Registerer, q *Queue) {
	if reg == nil {
		return
	}
	reg.MustRegister(m.enqueued, m.delivered, m.failed, m.refused, m.retries, m.latency, m.upstreamSeconds, m.commitSeconds,
		&depthCollector{q: q})
}

var (
	depthDesc = prometheus.NewDesc("courier_queue_items", "Items in the queue by routing key and state.",
		[]string{"routing_key", "state"}, nil)
	depthBytesDesc = prometheus.NewDesc("courier_queue_bytes", "Bytes in the queue by routing key and state.",
		[]string{"routing_key", "state"}, nil)
	oldestDesc = prometheus.NewDesc("courier_queue_oldest_pending_seconds", "Age of the oldest pending item.", nil, nil)
	diskDesc   = prometheus.NewDesc("courier_queue_disk_bytes", "Bytes the queue store uses on disk.", nil, nil)
)

// depthCollector reads the depth at scrape time from the queue actor, so
// the numbers are those of one consistent snapshot.
type depthCollector struct{ q *Queue }

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthDesc
	ch <- depthBytesDesc
	ch <- oldestDesc
	ch <- diskDesc
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
	label := c.q.keyLabel
	for _, k := range s.Keys {
		l := label(k.Key)
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(k.Pending), l, "pending")
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(k.Delivering), l, "delivering")
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(k.Failed), l, "failed")
		ch <- prometheus.MustNewConstMetric(depthBytesDesc, prometheus.GaugeValue, float64(k.PendingBytes), l, "pending")
		ch <- prometheus.MustNewConstMetric(depthBytesDesc, prometheus.GaugeValue, float64(k.FailedBytes), l, "failed")
	}
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, s.OldestPendingS)
	ch <- prometheus.MustNewConstMetric(diskDesc, prometheus.GaugeValue, float64(s.DiskBytes))
}
