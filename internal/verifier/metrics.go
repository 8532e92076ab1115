// SPDX-License-Identifier: Apache-2.0

package verifier

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Metrics are what pam-totp-verifier counts, served as Prometheus text
// (pam-totp-verifier(8) names each). A nil *Metrics counts nothing.
type Metrics struct {
	mu          sync.Mutex
	decisions   map[string]uint64 // by outcome
	lockouts    uint64
	dirErrors   uint64
	refusals    uint64
	connections map[string]int // open connections by host
	buckets     []uint64       // decision time, cumulative per bound in latencyBounds
	sum         float64
	count       uint64

	// The locked-users gauge: counted in the directory when scraped, at
	// most once per lockedEvery, so that scraping fast cannot make the
	// verifier search the whole directory over and over.
	countLocked func() (int, error)
	lockedMu    sync.Mutex
	lockedAt    time.Time
	locked      int
	lockedErr   error
}

// lockedEvery is the least time between two counts of the locked users.
const lockedEvery = 10 * time.Second

// latencyBounds are the histogram's upper bounds, in seconds.
var latencyBounds = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// NewMetrics is a set of zero counters.
func NewMetrics() *Metrics {
	return &Metrics{decisions: map[string]uint64{"ok": 0, "fail": 0, "ignore": 0},
		connections: map[string]int{}, buckets: make([]uint64, len(latencyBounds))}
}

// CountLocked makes the metrics serve pam_totp_verifier_locked_users,
// counted by count.
func (m *Metrics) CountLocked(count func() (int, error)) {
	m.countLocked = count
}

// lockedUsers is the last count of the locked users, counted again when
// it is older than lockedEvery.
func (m *Metrics) lockedUsers() (int, error) {
	m.lockedMu.Lock()
	defer m.lockedMu.Unlock()
	if m.lockedAt.IsZero() || time.Since(m.lockedAt) >= lockedEvery {
		m.locked, m.lockedErr = m.countLocked()
		m.lockedAt = time.Now()
	}
	return m.locked, m.lockedErr
}

func (m *Metrics) decided(outcome string, locked, unreachable bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.decisions[outcome]++
	if locked {
		m.lockouts++
	}
	if unreachable {
		m.dirErrors++
	}
}

func (m *Metrics) refused() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.refusals++
	m.mu.Unlock()
}

func (m *Metrics) connected(host string, d int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.connections[host] += d; m.connections[host] <= 0 {
		delete(m.connections, host)
	}
}

func (m *Metrics) took(d time.Duration) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	sec := d.Seconds()
	for i, b := range latencyBounds {
		if sec <= b {
			m.buckets[i]++
		}
	}
	m.sum += sec
	m.count++
}

// Write writes the metrics in Prometheus' text format.
func (m *Metrics) Write(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	if m.countLocked != nil {
		// Outside m.mu: the directory's answer must not hold up logins.
		// When it cannot be counted, the sample is left out (alert on its
		// absence) and the verifier's log says why.
		p("# HELP pam_totp_verifier_locked_users Users locked now, as the directory has them (counted at most every %s).", lockedEvery)
		p("# TYPE pam_totp_verifier_locked_users gauge")
		if n, err := m.lockedUsers(); err == nil {
			p("pam_totp_verifier_locked_users %d", n)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p("# HELP pam_totp_verifier_decisions_total Logins decided, by outcome.")
	p("# TYPE pam_totp_verifier_decisions_total counter")
	var outcomes []string
	for o := range m.decisions {
		outcomes = append(outcomes, o)
	}
	sort.Strings(outcomes)
	for _, o := range outcomes {
		p("pam_totp_verifier_decisions_total{outcome=%q} %d", o, m.decisions[o])
	}
	p("# HELP pam_totp_verifier_lockouts_total Decisions that locked a user.")
	p("# TYPE pam_totp_verifier_lockouts_total counter")
	p("pam_totp_verifier_lockouts_total %d", m.lockouts)
	p("# HELP pam_totp_verifier_directory_errors_total Decisions that failed because the directory could not be reached.")
	p("# TYPE pam_totp_verifier_directory_errors_total counter")
	p("pam_totp_verifier_directory_errors_total %d", m.dirErrors)
	p("# HELP pam_totp_verifier_refused_connections_total Host connections refused (TLS, not in the hosts group, full).")
	p("# TYPE pam_totp_verifier_refused_connections_total counter")
	p("pam_totp_verifier_refused_connections_total %d", m.refusals)
	n := 0
	for _, c := range m.connections {
		n += c
	}
	p("# HELP pam_totp_verifier_connections Open connections from hosts.")
	p("# TYPE pam_totp_verifier_connections gauge")
	p("pam_totp_verifier_connections %d", n)
	p("# HELP pam_totp_verifier_hosts Hosts with an open connection.")
	p("# TYPE pam_totp_verifier_hosts gauge")
	p("pam_totp_verifier_hosts %d", len(m.connections))
	p("# HELP pam_totp_verifier_decision_seconds Time of a login in the verifier, less the time it waited for the user.")
	p("# TYPE pam_totp_verifier_decision_seconds histogram")
	for i, b := range latencyBounds {
		p("pam_totp_verifier_decision_seconds_bucket{le=\"%g\"} %d", b, m.buckets[i])
	}
	p("pam_totp_verifier_decision_seconds_bucket{le=\"+Inf\"} %d", m.count)
	p("pam_totp_verifier_decision_seconds_sum %g", m.sum)
	p("pam_totp_verifier_decision_seconds_count %d", m.count)
}

// ServeMetrics serves /metrics on ln until it is closed.
func (m *Metrics) ServeMetrics(ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		m.Write(w)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
	return srv.Serve(ln)
}
