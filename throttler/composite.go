package throttler

import "context"

// Composite combines throttlers: work pauses while any of them is throttled.
//
// Guarantees: every member is checked on every call, in order, so an error (for example a critical
// load level) aborts the run even while an earlier member is throttled; the first error is returned
// unchanged (errors.As still finds *CriticalLoadError). Otherwise the status of the first throttled
// member is returned — the first reason wins. Nil members are skipped; an empty Composite never
// throttles. Composite is as safe for concurrent use as its members.
type Composite []Throttler

// NewComposite returns a Composite of ts.
func NewComposite(ts ...Throttler) Composite { return Composite(ts) }

// Check implements Throttler.
func (c Composite) Check(ctx context.Context) (Status, error) {
	var first Status
	for _, t := range c {
		if t == nil {
			continue
		}
		st, err := t.Check(ctx)
		if err != nil {
			return Status{}, err
		}
		if st.Throttled && !first.Throttled {
			first = st
		}
	}
	return first, nil
}
