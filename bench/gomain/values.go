package main

// The Go side of make bench's values group: a 10-field record and the
// same data as nested pairs, each way.

import (
	"runtime"

	"lwt"
)

type record10 struct {
	A, B, C int64
	D, E, F float64
	G, H, I string
	J       int64
}

type pairs10 = lwt.Pair[int64, lwt.Pair[int64, lwt.Pair[int64, lwt.Pair[float64, lwt.Pair[float64,
	lwt.Pair[float64, lwt.Pair[string, lwt.Pair[string, lwt.Pair[string, int64]]]]]]]]]

var (
	sample      = record10{A: 1, B: -2, C: 1<<62 - 1, D: 0.5, E: 1e300, G: "gopher", I: "a longer string, of 40 bytes or so....."}
	samplePairs = toPairs(sample)
)

func toPairs(r record10) (p pairs10) {
	p.First, p.Second.First, p.Second.Second.First = r.A, r.B, r.C
	q := &p.Second.Second.Second
	q.First, q.Second.First, q.Second.Second.First = r.D, r.E, r.F
	s := &q.Second.Second.Second
	s.First, s.Second.First, s.Second.Second.First, s.Second.Second.Second = r.G, r.H, r.I, r.J
	return p
}

func registerValues() {
	lwt.MustRegisterSync("bench.take_record10", func(r record10) (int64, error) { return r.A, nil })
	lwt.MustRegisterSync("bench.take_pairs10", func(p pairs10) (int64, error) { return p.First, nil })
	lwt.MustRegisterSync("bench.give_record10", func(unit) (record10, error) { return sample, nil })
	lwt.MustRegisterSync("bench.give_pairs10", func(unit) (pairs10, error) { return samplePairs, nil })
	lwt.MustRegisterSync("bench.take_records10", func(rs []record10) (int64, error) { return int64(len(rs)), nil })
	lwt.MustRegisterSync("bench.take_pairs10s", func(ps []pairs10) (int64, error) { return int64(len(ps)), nil })
	lwt.MustRegisterSync("bench.mallocs", func(unit) (int64, error) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.Mallocs), nil
	})
}
