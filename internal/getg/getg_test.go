package getg

import (
	"runtime"
	"testing"
)

// G is the same within a goroutine and differs between two live ones.
func TestG(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		if G() != 0 {
			t.Fatal("G without assembly is not 0")
		}
		return
	}
	mine := G()
	if mine == 0 || G() != mine {
		t.Fatalf("G = %#x, then %#x", mine, G())
	}
	other, done := make(chan uintptr), make(chan struct{})
	go func() {
		other <- G()
		<-done // alive while compared
	}()
	if g := <-other; g == mine || g == 0 {
		t.Fatalf("two goroutines, one G: %#x", g)
	}
	close(done)
}
