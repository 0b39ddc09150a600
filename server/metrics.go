package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chatlog/chatlog/repo"
)

// metrics are the server's Prometheus metrics, in a registry of its own
// (so several Servers may live in one process, as in tests).
type metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec   // route, code
	latency    *prometheus.HistogramVec // route
	appends    *prometheus.CounterVec   // endpoint
	duplicates *prometheus.CounterVec   // endpoint
	conflicts  *prometheus.CounterVec   // endpoint, code
	appendTime *prometheus.HistogramVec // endpoint
	streams    prometheus.Gauge
}

// Write endpoints, the endpoint label of the append metrics.
const (
	epEvents    = "events"
	epTurns     = "turns"
	epHeartbeat = "heartbeat"
	epDeltas    = "deltas"
	epFinish    = "finish"
	epLedger    = "ledger"
)

// endpointOf names the endpoint a request was routed to, for metrics.
func endpointOf(r *http.Request) string {
	switch {
	case r.Method != http.MethodPost:
		return r.Pattern
	case strings.HasSuffix(r.Pattern, "/events"):
		return epEvents
	case strings.HasSuffix(r.Pattern, "/turns"):
		return epTurns
	case strings.HasSuffix(r.Pattern, "/heartbeat"):
		return epHeartbeat
	case strings.HasSuffix(r.Pattern, "/deltas"):
		return epDeltas
	case strings.HasSuffix(r.Pattern, "/finish"):
		return epFinish
	case strings.HasSuffix(r.Pattern, "/ledger"):
		return epLedger
	}
	return r.Pattern
}

func newMetrics(storeStats func() map[string]float64) *metrics {
	latencyBuckets := prometheus.ExponentialBuckets(0.00025, 2, 16) // 0.25 ms .. 8 s
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatlog_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chatlog_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern (event streams: their whole life).",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatlog_http_appends_total",
			Help: "Events written by write endpoints (events, turns, deltas, finish, ledger).",
		}, []string{"endpoint"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatlog_http_duplicates_total",
			Help: "Retries answered with the stored event (Idempotent-Replayed), by endpoint.",
		}, []string{"endpoint"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatlog_http_conflicts_total",
			Help: "409 answers by endpoint and error code (idempotency_conflict, seq_conflict, stale_attempt, ...).",
		}, []string{"endpoint", "code"}),
		appendTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chatlog_http_append_duration_seconds",
			Help:    "Time the store took for a write endpoint's call, whatever its outcome.",
			Buckets: latencyBuckets,
		}, []string{"endpoint"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatlog_http_sse_streams_open",
			Help: "Server-sent event streams open now.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.appends, m.duplicates, m.conflicts, m.appendTime, m.streams,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if storeStats != nil {
		m.reg.MustRegister(storeCollector(storeStats))
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// request counts one answered request.
func (m *metrics) request(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

// write records a write endpoint's store call: its duration, and whether
// it appended or found a duplicate (failures are counted by writeError).
func (m *metrics) write(endpoint string, d time.Duration, outcome repo.Outcome) {
	m.appendTime.WithLabelValues(endpoint).Observe(d.Seconds())
	switch outcome {
	case repo.Appended:
		m.appends.WithLabelValues(endpoint).Inc()
	case repo.Duplicate:
		m.duplicates.WithLabelValues(endpoint).Inc()
	}
}

// conflict counts one 409.
func (m *metrics) conflict(endpoint, code string) {
	m.conflicts.WithLabelValues(endpoint, code).Inc()
}

// storeCollector exposes Options.StoreStats as chatlog_store_<name>. The
// names are known only at scrape time, so it describes nothing (an
// unchecked collector).
type storeCollector func() map[string]float64

func (c storeCollector) Describe(chan<- *prometheus.Desc) {}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	for name, v := range c() {
		desc := prometheus.NewDesc("chatlog_store_"+metricName(name), "Store statistic "+name+".", nil, nil)
		ch <- prometheus.MustNewConstMetric(desc, prometheus.UntypedValue, v)
	}
}

// metricName keeps the characters a Prometheus name allows, replacing
// the others with '_'.
func metricName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		}
		return '_'
	}, s)
}
