package lwt

// Streams: bounded, ordered sequences of values from one producer to one
// reader, either of which may be OCaml (Lwt_interop.Ty.stream, an
// 'a Lwt_stream.t there). A Stream's buffer never holds more than its
// capacity: a producer waits for room (backpressure), a reader for values.
// Values cross in batches of those ready, one call per batch:
//   - a Go stream read by OCaml crosses as a TaskCallback that takes the
//     values ready (waiting for one if there is none); OCaml's GC
//     collecting the Lwt_stream stops the stream, as Close does;
//   - an OCaml Lwt_stream read by Go crosses as a closure that Go calls
//     (Func.Go) for the next batch, while it still has half a buffer to
//     read.
// Every method is safe from any goroutine; a wait suspends a loop task (as
// Promise.Await does), blocks a goroutine, and returns ErrWouldBlock
// elsewhere on the Lwt thread. Under mu, nothing waits and
// nothing calls OCaml: wake-ups happen after it is released.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"reflect"
	"sync"
	"unsafe"
)

// ErrStreamStopped is what Sender.Send returns once the reader stopped the
// stream (Stream.Close, or OCaml's GC collecting the Lwt_stream it read),
// and what Recv returns after Close.
var ErrStreamStopped = errors.New("lwt: the stream's reader stopped")

// streamCapacity bounds the buffer of a stream that comes from OCaml:
// Go reads ahead that many values at most.
const streamCapacity = 64

// Stream is the reading end of a bounded stream of values of type T, made
// by NewStream (Go writes it through a Sender) or received from OCaml (an
// 'a Lwt_stream.t that Go reads). It is read once: by Go (Recv, All) or,
// passed to OCaml, by OCaml, not both.
type Stream[T any] struct {
	mu       sync.Mutex
	ring     []T // the values ready: count of them from head, wrapping; capacity slots, made at the first
	head     int
	count    int
	capacity int
	ended    bool          // the producer finished: nothing comes after the ring
	err      error         // why it ended; nil for the end of the stream
	stopped  bool          // the reader closed it
	done     chan struct{} // closed when stopped
	crossed  bool          // passed to OCaml, its reader
	// A waiting reader or producer awaits one of these, made on demand; the
	// other side settles and clears it.
	readable, writable *Promise[struct{}]
	// gone is closed when the bridge shuts down, once OCaml reads the
	// stream: its producer has no reader left.
	gone <-chan struct{}
	// A stream from OCaml: pull asks OCaml for up to n more values (and
	// whether they are the last); pulling is the call in flight.
	pull    *Func[int, Pair[[]T, bool]]
	pulling *Promise[Pair[[]T, bool]]
}

// Sender is the producing end of a stream made by NewStream. A Go function
// that returns the stream to OCaml returns before its producer is done: the
// function's context then ends, so the producer's Send needs a context of
// its own (the reader's stop and the bridge's shutdown end Send anyway).
type Sender[T any] struct{ s *Stream[T] }

// NewStream returns a stream whose buffer holds up to capacity values
// (at least 1), and the Sender that writes it.
func NewStream[T any](capacity int) (*Stream[T], Sender[T]) {
	s := &Stream[T]{capacity: max(capacity, 1), done: make(chan struct{})}
	return s, Sender[T]{s}
}

// StreamOf returns a stream of seq's values, which a new goroutine sends
// into a buffer of capacity: a (zero, err) pair ends the stream with err,
// as a panic does. Its yield returns false, and the stream ends, once the
// reader stopped the stream or (read by OCaml) the bridge shut down.
func StreamOf[T any](capacity int, seq iter.Seq2[T, error]) *Stream[T] {
	s, w := NewStream[T](capacity)
	go func() {
		stopped := false // by the reader (not an error of seq's, whose methods could panic here)
		_, err := recovered(func() (struct{}, error) {
			for v, err := range seq {
				if err != nil {
					return struct{}{}, err
				}
				if err := w.Send(context.Background(), v); err != nil {
					stopped = err == ErrStreamStopped
					return struct{}{}, err
				}
			}
			return struct{}{}, nil
		})
		if !stopped {
			w.Close(err)
		}
	}()
	return s
}

// Send adds v to the stream, waiting while the buffer is full. It returns
// ErrStreamStopped if the reader stopped the stream, ctx's error if ctx
// ends first, ErrClosed if OCaml read the stream and the bridge shut down,
// and an error after Close.
func (w Sender[T]) Send(ctx context.Context, v T) error {
	s := w.s
	for {
		s.mu.Lock()
		switch {
		case s.stopped:
			s.mu.Unlock()
			return ErrStreamStopped
		case s.ended:
			s.mu.Unlock()
			return fmt.Errorf("lwt: Send on a closed Stream[%v]", reflect.TypeFor[T]())
		case isClosed(s.gone):
			s.mu.Unlock()
			return ErrClosed
		case s.count < s.capacity:
			s.push(v)
			r := s.readable
			s.readable = nil
			s.mu.Unlock()
			wake(r)
			return nil
		}
		wait := signalIn(&s.writable)
		gone := s.gone
		s.mu.Unlock()
		if err := awaitSignal(ctx, wait, gone); err != nil {
			return err
		}
	}
}

// Done returns a channel closed when the reader stops the stream: what a
// producer waiting for something else to send selects on.
func (w Sender[T]) Done() <-chan struct{} { return w.s.done }

// Close ends the stream after the values sent: with err if it is not nil
// (the reader gets it once it has read them), else with the end of the
// stream (io.EOF for Recv). Later calls change nothing and return false.
func (w Sender[T]) Close(err error) bool {
	s := w.s
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return false
	}
	s.ended, s.err = true, err
	r := s.readable
	s.readable = nil
	s.mu.Unlock()
	wake(r)
	return true
}

// Recv returns the next value. At the end of the stream it returns io.EOF,
// or the producer's error (an *OCamlError for an OCaml stream that raised);
// after Close, ErrStreamStopped; if ctx ends first, ctx's error. Waiting
// for a value suspends a loop task; elsewhere on the Lwt thread (a sync
// function, a job) Recv returns ErrWouldBlock instead.
func (s *Stream[T]) Recv(ctx context.Context) (T, error) {
	var one [1]T
	vs, err := s.take(ctx, 1, one[:0], false)
	if len(vs) == 0 {
		var zero T
		return zero, err
	}
	return vs[0], nil
}

// All returns the stream's values as an iterator: the value and a nil
// error for each, then one (zero, err) pair if the stream ends with an
// error other than io.EOF (ctx's too). Leaving the loop early stops the
// stream (Close).
func (s *Stream[T]) All(ctx context.Context) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			v, err := s.Recv(ctx)
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(v, err)
				s.Close()
				return
			}
			if !yield(v, nil) {
				s.Close()
				return
			}
		}
	}
}

// Close stops the stream: its values not read are dropped, its producer's
// Send returns ErrStreamStopped, an OCaml stream is no longer read (the
// call in flight is cancelled). Idempotent.
func (s *Stream[T]) Close() { s.stop(onLoopThread()) }

// stop is Close; onLoop is false when it runs in OCaml's GC (a finaliser,
// which must not run OCaml code: wake-ups are posted).
func (s *Stream[T]) stop(onLoop bool) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	close(s.done)
	s.ring, s.head, s.count = nil, 0, 0
	r, w, pulling, pull := s.readable, s.writable, s.pulling, s.pull
	s.readable, s.writable, s.pulling, s.pull = nil, nil, nil, nil
	s.mu.Unlock()
	for _, p := range []*Promise[struct{}]{r, w} {
		if p != nil {
			p.settle(struct{}{}, nil, onLoop)
		}
	}
	if pulling != nil {
		pulling.Cancel() // posts
	}
	if pull != nil {
		if onLoop {
			pull.Release()
		} else { // not inside OCaml's GC: freeing a root there is not allowed
			pull.root.l.post(pull.Release)
		}
	}
}

// fail ends the stream with err, dropping the values not read: one of them
// cannot cross to OCaml. The producer's next Send fails.
func (s *Stream[T]) fail(err error) {
	s.mu.Lock()
	s.ended, s.err = true, err
	s.ring, s.head, s.count = nil, 0, 0
	w := s.writable
	s.writable = nil
	s.mu.Unlock()
	wake(w)
}

// holdsInt reports whether OCaml's type holds an int, which a Go value may
// not fit.
func holdsInt(o *otype) bool {
	if o.code == 'i' {
		return true
	}
	for _, e := range o.elems {
		if holdsInt(e) {
			return true
		}
	}
	for _, f := range o.fields {
		if f.typ != nil && holdsInt(f.typ) {
			return true
		}
	}
	return false
}

// push adds v after the values ready; there is room. Under mu.
func (s *Stream[T]) push(v T) {
	if s.ring == nil {
		s.ring = make([]T, s.capacity)
	}
	s.ring[(s.head+s.count)%s.capacity] = v
	s.count++
}

// take appends to out up to max values, waiting for the first one, and
// returns io.EOF with them if they are the last. With none, it returns the
// stream's end: io.EOF, the producer's error or ErrStreamStopped (or ctx's
// error). byOCaml tells OCaml's reads from Go's.
func (s *Stream[T]) take(ctx context.Context, max int, out []T, byOCaml bool) ([]T, error) {
	for {
		s.mu.Lock()
		if s.crossed && !byOCaml {
			s.mu.Unlock()
			return out, fmt.Errorf("lwt: a Stream[%v] passed to OCaml is OCaml's to read", reflect.TypeFor[T]())
		}
		s.absorbPull()
		if s.stopped {
			s.mu.Unlock()
			return out, ErrStreamStopped
		}
		if n := min(max, s.count); n > 0 {
			var zero T
			for range n {
				out = append(out, s.ring[s.head])
				s.ring[s.head] = zero // the reader owns it now
				s.head = (s.head + 1) % s.capacity
			}
			s.count -= n
			var last error
			if s.ended && s.err == nil && s.count == 0 {
				last = io.EOF
			}
			w := s.writable
			s.writable = nil
			s.readAhead()
			s.mu.Unlock()
			wake(w)
			return out, last
		}
		if s.ended {
			err := s.err
			s.mu.Unlock()
			if err == nil {
				err = io.EOF
			}
			return out, err
		}
		if s.pull != nil {
			s.readAhead()
			p := s.pulling
			s.mu.Unlock()
			if _, err := p.Await(ctx); err != nil {
				if _, _, settled := p.Result(); !settled { // ctx's error, ErrWouldBlock
					return out, err
				}
			}
			continue // absorbPull has the batch, or its error
		}
		wait := signalIn(&s.readable)
		s.mu.Unlock()
		if err := awaitSignal(ctx, wait, nil); err != nil {
			return out, err
		}
	}
}

// readAhead asks OCaml for more values once at most half the buffer is
// left to read, so that Go reads while OCaml makes the next batch. Under
// mu: the call is posted (a job makes it), even on the Lwt thread.
func (s *Stream[T]) readAhead() {
	if s.pull == nil || s.pulling != nil || s.ended || s.stopped {
		return
	}
	if s.count <= s.capacity/2 {
		s.pulling = s.pull.goCall(context.Background(), s.capacity-s.count, true)
	}
}

// absorbPull moves the batch of a settled pull into the buffer, and lets
// OCaml's stream go once it ended. Under mu (a release calls no OCaml).
func (s *Stream[T]) absorbPull() {
	if s.pulling == nil {
		return
	}
	batch, err, ok := s.pulling.Result()
	if !ok {
		return
	}
	s.pulling = nil
	switch {
	case err != nil:
		s.ended, s.err = true, err
	case len(batch.First) > s.capacity-s.count:
		s.ended, s.err = true, fmt.Errorf("lwt: OCaml's stream sent %d values where %d were asked for", len(batch.First), s.capacity-s.count)
	default:
		for _, v := range batch.First {
			s.push(v)
		}
		s.ended = batch.Second
	}
	if s.ended {
		s.pull.Release()
		s.pull = nil
	}
}

// signalIn returns the promise in *slot, made if there is none. Under mu.
func signalIn(slot **Promise[struct{}]) *Promise[struct{}] {
	if *slot == nil {
		*slot = new(Promise[struct{}])
	}
	return *slot
}

// wake settles a signal taken from its slot (nil: nobody waits, and the
// thread check, a call into C off the Lwt thread, is not made).
func wake(p *Promise[struct{}]) {
	if p != nil {
		p.settle(struct{}{}, nil, onLoopThread())
	}
}

// awaitSignal waits for p, ctx's end or the bridge's shutdown (gone).
func awaitSignal(ctx context.Context, p *Promise[struct{}], gone <-chan struct{}) error {
	if gone == nil || onLoopThread() { // a task: shutdown stops it anyway
		_, err := p.Await(ctx)
		return err
	}
	select {
	case <-p.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-gone:
		return ErrClosed
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// streamType is implemented by *Stream[T], so that codecFor can build its
// codec without reflection.
type streamType interface {
	streamCodec(elem *otype) (decode func(value) (any, error), encode func(any) (value, error), err error)
}

// streamCodec: OCaml's Lwt_stream arrives as a closure int -> (values,
// last) Lwt.t, which the stream calls for each batch; Go's stream leaves as
// a TaskCallback of the same type, which OCaml's Lwt_stream calls.
func (*Stream[T]) streamCodec(elem *otype) (func(value) (any, error), func(any) (value, error), error) {
	batch := &otype{code: 'T', elems: []*otype{{code: 'L', elems: []*otype{elem}}, {code: 'b'}}}
	hold, err := (*Func[int, Pair[[]T, bool]])(nil).closureCodec(&otype{code: 'i'}, batch, false)
	if err != nil {
		return nil, nil, err
	}
	leave, err := (*Callback[int, Pair[[]T, bool]])(nil).callbackCodec(&otype{code: 'i'}, batch, false)
	if err != nil {
		return nil, nil, err
	}
	// A value that cannot cross (a Go int past OCaml's 63 bits) would fail
	// its whole batch: where the type holds an int, each value is tried
	// first, and the batch stops before the first that fails, whose error
	// then ends the stream.
	var check *flatCodec
	if holdsInt(elem) {
		if check, err = flatCodecOf(elem, reflect.TypeFor[T]()); err != nil {
			return nil, nil, err
		}
	}
	decode := func(v value) (any, error) {
		f, err := hold(v)
		if err != nil {
			return nil, err
		}
		return &Stream[T]{capacity: streamCapacity, done: make(chan struct{}), pull: f.(*Func[int, Pair[[]T, bool]])}, nil
	}
	encode := func(x any) (value, error) {
		s := x.(*Stream[T])
		if s == nil {
			return 0, fmt.Errorf("lwt: a nil *Stream[%v] cannot cross to OCaml", reflect.TypeFor[T]())
		}
		l, err := activeLoop()
		if err != nil {
			return 0, err
		}
		s.mu.Lock()
		if s.crossed {
			s.mu.Unlock()
			return 0, fmt.Errorf("lwt: a Stream[%v] crosses to OCaml once: it has one reader", reflect.TypeFor[T]())
		}
		s.crossed, s.gone = true, l.gone
		w := s.writable // a Send waiting since before: it now watches gone too
		s.writable = nil
		s.mu.Unlock()
		wake(w)
		cb := TaskCallback(func(ctx context.Context, max int) (Pair[[]T, bool], error) {
			vs, err := s.take(ctx, max, nil, true)
			if check != nil {
				var scratch []byte
				for i := range vs {
					var bad error
					if scratch, bad = check.put(scratch[:0], unsafe.Pointer(&vs[i])); bad != nil {
						s.fail(bad)
						if i == 0 {
							return Pair[[]T, bool]{}, bad
						}
						return Pair[[]T, bool]{First: vs[:i]}, nil
					}
				}
			}
			if err == io.EOF {
				return Pair[[]T, bool]{First: vs, Second: true}, nil
			}
			return Pair[[]T, bool]{First: vs}, err
		})
		cb.released = func() { s.stop(false) } // in OCaml's GC
		return leave(cb)
	}
	return decode, encode, nil
}
