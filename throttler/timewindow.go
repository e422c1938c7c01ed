package throttler

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// TimeWindow throttles during a daily window of wall-clock time in a location, e.g. "do not copy
// between 09:00 and 17:00 Europe/Berlin".
//
// Guarantees: work is throttled when Start <= now < End in Location (both clock times of the same
// day), or, when End is earlier than Start, from Start until End the next morning (a window across
// midnight such as 22:00-06:00). Daylight-saving changes follow Location: the window is in local
// wall-clock time. If Weekdays is not empty the window only applies on those days, judged by the
// day on which the window began. Check never blocks and never fails.
type TimeWindow struct {
	// Start and End are offsets from midnight, e.g. 9*time.Hour; use NewTimeWindow to parse "09:00".
	Start, End time.Duration
	// Location is the time zone of Start and End; nil means time.Local.
	Location *time.Location
	// Weekdays, when not empty, limits the window to these days.
	Weekdays []time.Weekday
	// Now returns the current time; nil means time.Now. Tests inject a clock here.
	Now func() time.Time
}

// NewTimeWindow returns a TimeWindow throttling from start to end ("HH:MM" or "HH:MM:SS", 24-hour
// clock) every day in loc (nil: time.Local).
func NewTimeWindow(start, end string, loc *time.Location) (*TimeWindow, error) {
	s, err := parseClock(start)
	if err != nil {
		return nil, err
	}
	e, err := parseClock(end)
	if err != nil {
		return nil, err
	}
	if s == e {
		return nil, fmt.Errorf("throttler: time window %s-%s is empty", start, end)
	}
	return &TimeWindow{Start: s, End: e, Location: loc}, nil
}

func parseClock(v string) (time.Duration, error) {
	parts := strings.Split(strings.TrimSpace(v), ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("throttler: time %q: want HH:MM or HH:MM:SS", v)
	}
	limits := []int{24, 60, 60}
	units := []time.Duration{time.Hour, time.Minute, time.Second}
	var d time.Duration
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n >= limits[i] || len(p) > 2 {
			return 0, fmt.Errorf("throttler: time %q: want HH:MM or HH:MM:SS", v)
		}
		d += time.Duration(n) * units[i]
	}
	return d, nil
}

// Check implements Throttler.
func (w *TimeWindow) Check(context.Context) (Status, error) {
	in, until := w.inside(w.now())
	if !in {
		return Status{}, nil
	}
	return Status{Throttled: true, Reason: "inside time window " + w.String(),
		Detail: "until " + until.Format("2006-01-02 15:04:05 MST")}, nil
}

func (w *TimeWindow) now() time.Time {
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	loc := w.Location
	if loc == nil {
		loc = time.Local
	}
	return now().In(loc)
}

// inside reports whether t (already in the window's location) is inside the window, and when the
// window ends.
func (w *TimeWindow) inside(t time.Time) (bool, time.Time) {
	if w.Start == w.End {
		return false, time.Time{}
	}
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location())
	// The window that may contain t began today or, for a window across midnight, yesterday.
	for _, begin := range []time.Time{day, day.AddDate(0, 0, -1)} {
		start := clockOn(begin, w.Start)
		endDay := begin
		if w.End < w.Start {
			endDay = begin.AddDate(0, 0, 1)
		}
		end := clockOn(endDay, w.End)
		if !t.Before(start) && t.Before(end) && w.onDay(begin.Weekday()) {
			return true, end
		}
	}
	return false, time.Time{}
}

// clockOn is the wall-clock time d after midnight on day, in day's location.
func clockOn(day time.Time, d time.Duration) time.Time {
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	return time.Date(day.Year(), day.Month(), day.Day(), h, m, s, 0, day.Location())
}

func (w *TimeWindow) onDay(d time.Weekday) bool {
	if len(w.Weekdays) == 0 {
		return true
	}
	for _, wd := range w.Weekdays {
		if wd == d {
			return true
		}
	}
	return false
}

// String describes the window, e.g. "09:00-17:00 Europe/Berlin".
func (w *TimeWindow) String() string {
	loc := w.Location
	if loc == nil {
		loc = time.Local
	}
	s := fmtClock(w.Start) + "-" + fmtClock(w.End) + " " + loc.String()
	if len(w.Weekdays) > 0 {
		days := make([]string, len(w.Weekdays))
		for i, d := range w.Weekdays {
			days[i] = d.String()[:3]
		}
		s += " on " + strings.Join(days, ",")
	}
	return s
}

func fmtClock(d time.Duration) string {
	s := fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
	if sec := int(d % time.Minute / time.Second); sec != 0 {
		s += fmt.Sprintf(":%02d", sec)
	}
	return s
}
