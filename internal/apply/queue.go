package apply

import "context"

// Take waits for the next item of queue and takes the items queued behind it, until their size
// adds up to limit or the queue is empty, so that many small batches are applied in one
// transaction. Once closed is closed (nil: never), Take returns what is left in the queue and then
// done. It returns ctx's error when ctx ends first.
func Take[T any](ctx context.Context, queue <-chan T, closed <-chan struct{}, size func(T) int, limit int) (items []T, n int, done bool, err error) {
	var first T
	select {
	case <-ctx.Done():
		return nil, 0, false, ctx.Err()
	case first = <-queue:
	case <-closed:
		select {
		case first = <-queue:
		default:
			return nil, 0, true, nil
		}
	}
	items, n = []T{first}, size(first)
	for n < limit {
		select {
		case it := <-queue:
			items = append(items, it)
			n += size(it)
		default:
			return items, n, false, nil
		}
	}
	return items, n, false, nil
}
