package main

// The Go side of make bench's stream group: 4 KiB chunks each way, as a
// stream and as one call each.

import (
	"context"
	"strings"

	"lwt"
)

var chunk = strings.Repeat("x", 4096)

func registerStreams() {
	// OCaml to Go: a goroutine reads the stream (or gets one chunk a call)
	// and counts the bytes.
	lwt.MustRegister("bench.stream.read", func(ctx context.Context, s *lwt.Stream[string]) (int, error) {
		n := 0
		for c, err := range s.All(ctx) {
			if err != nil {
				return n, err
			}
			n += len(c)
		}
		return n, nil
	})
	lwt.MustRegister("bench.stream.take_chunk", func(_ context.Context, c string) (int, error) { return len(c), nil })
	// Go to OCaml: a goroutine writes chunks until OCaml stops reading (or
	// a call returns one chunk).
	lwt.MustRegister("bench.stream.write", func(context.Context, unit) (*lwt.Stream[string], error) {
		return lwt.StreamOf(64, func(yield func(string, error) bool) {
			for yield(chunk, nil) {
			}
		}), nil
	})
	lwt.MustRegister("bench.stream.give_chunk", func(context.Context, unit) (string, error) { return chunk, nil })
}
