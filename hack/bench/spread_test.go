package main

import "testing"

// The median of an even count is the mean of the two middle values; min
// and max whatever the order given.
func TestSpread(t *testing.T) {
	for _, c := range []struct {
		ms               []float64
		median, min, max float64
	}{
		{[]float64{3, 1, 2}, 2, 1, 3},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
		{[]float64{7}, 7, 7, 7},
	} {
		if m, lo, hi := spread(c.ms); m != c.median || lo != c.min || hi != c.max {
			t.Errorf("%v: %v %v %v, want %v %v %v", c.ms, m, lo, hi, c.median, c.min, c.max)
		}
	}
}
