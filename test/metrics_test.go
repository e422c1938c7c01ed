package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/metrics"
	"github.com/ferrykit/ferry/throttler"
)

// startPrometheus runs the prometheus server on loopback, scraping target every 200ms, and returns
// its base URL.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("the prometheus server is not installed; run `make deps` (apt-get install prometheus)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\nscrape_configs:\n  - job_name: ferry\n    static_configs:\n      - targets: ['%s']\n", target)), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r, err := http.Get(base + "/-/ready"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus did not become ready:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promQuery runs an instant query and returns the value of its single sample (ok false when empty).
func promQuery(t *testing.T, base, q string) (float64, bool) {
	t.Helper()
	r, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	must(t, err)
	defer r.Body.Close()
	var res struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	must(t, json.NewDecoder(r.Body).Decode(&res))
	if res.Status != "success" || len(res.Data.Result) != 1 {
		return 0, false
	}
	v, err := strconv.ParseFloat(res.Data.Result[0].Value[1].(string), 64)
	must(t, err)
	return v, true
}

// A real Prometheus server scrapes a running copy: the rows-copied figure it stores rises from 0
// while throttled to every row, and the lag, throttle and apply metrics are there.
func TestPrometheusScrapesARunningCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS prom", "CREATE DATABASE prom", "USE prom",
		"CREATE TABLE prom.t (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO prom.t SELECT seq, 'row' FROM seq_1_to_5000"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS prom"))
	pause := filepath.Join(t.TempDir(), "pause")
	must(t, os.WriteFile(pause, nil, 0o600))

	f, err := ferry.New(ferry.Config{Source: conn(source), Target: conn(target), Tables: ferry.TableFilter{Databases: []string{"prom"}},
		BatchSize: 100, CreateTargetTables: true, Logger: testLogger(t)})
	must(t, err)
	defer f.Close()
	f.Throttler = throttler.FlagFile{Path: pause}
	reg := prometheus.NewRegistry()
	_, err = metrics.Register(reg, f)
	must(t, err)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	prom := startPrometheus(t, strings.TrimPrefix(srv.URL, "http://"))

	must(t, f.Initialize(ctx))
	must(t, f.Start(ctx))
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	const rows = `sum(ferry_copy_rows_copied_total{table="prom.t"})`
	waitFor(t, ctx, "prometheus to store the throttled copy at 0 rows", func() bool {
		v, ok := promQuery(t, prom, rows)
		th, _ := promQuery(t, prom, "ferry_throttled")
		return ok && v == 0 && th == 1
	})
	must(t, os.Remove(pause))
	must(t, f.WaitUntilRowCopyIsComplete(ctx))
	must(t, source.Exec(ctx, "UPDATE prom.t SET v = 'changed' WHERE id <= 10", "DELETE FROM prom.t WHERE id = 11"))
	must(t, f.FlushBinlogAndStopStreaming(ctx))
	must(t, <-errc)
	waitFor(t, ctx, "prometheus to store every row copied and the changes applied", func() bool {
		v, _ := promQuery(t, prom, rows)
		u, _ := promQuery(t, prom, `ferry_binlog_changes_applied_total{kind="update"}`)
		return v == 5000 && u == 10
	})
	if v, _ := promQuery(t, prom, fmt.Sprintf("min_over_time(%s[5m])", rows)); v != 0 {
		t.Errorf("lowest rows copied stored: %v, want 0 (the throttled start)", v)
	}
	if v, _ := promQuery(t, prom, `increase(ferry_copy_rows_copied_total{table="prom.t"}[5m])`); v <= 0 {
		t.Errorf("rows copied did not increase in prometheus: %v", v)
	}
	for _, q := range []string{`ferry_binlog_changes_applied_total{kind="delete"}`, "ferry_copy_complete", "ferry_binlog_lag_seconds",
		`sum(ferry_copy_batch_seconds_count)`, `sum(ferry_copy_bytes_total)`, "ferry_binlog_apply_seconds_count"} {
		if v, ok := promQuery(t, prom, q); !ok || (v == 0 && q != "ferry_binlog_lag_seconds") {
			t.Errorf("%s: %v (found %v)", q, v, ok)
		}
	}
}
