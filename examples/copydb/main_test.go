package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

func TestProgressLineNamesStalls(t *testing.T) {
	last := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		p        ferry.Progress
		want     []string
		dontWant []string
	}{
		{"healthy", ferry.Progress{RowsCopied: 10, EstimatedRows: 20, ETA: 5 * time.Second, CopyIdle: time.Second, StreamSilence: time.Second},
			[]string{"10/20 rows", "ETA 5s", "binlog lag 0s"}, []string{"STALLED"}},
		{"copy stalled", ferry.Progress{ETA: 5 * time.Second, CopyIdle: 40 * time.Second},
			[]string{"ETA - (stalled)", "STALLED: no rows copied for 40s"}, []string{"ETA 5s"}},
		{"throttled is not a stall", ferry.Progress{CopyIdle: 40 * time.Second, Throttled: true, ThrottleReason: "flag file"},
			[]string{"throttled: flag file"}, []string{"STALLED"}},
		{"stream silent", ferry.Progress{StreamSilence: 45 * time.Second, BinlogLag: 42 * time.Second, LastEventTime: last},
			[]string{"binlog lag 42s", "STALLED: binlog stream silent for 45s (last event 03:04:05 UTC)"}, nil},
	} {
		line := progressLine(tc.p)
		for _, w := range tc.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: %q lacks %q", tc.name, line, w)
			}
		}
		for _, w := range tc.dontWant {
			if strings.Contains(line, w) {
				t.Errorf("%s: %q has %q", tc.name, line, w)
			}
		}
	}
}
