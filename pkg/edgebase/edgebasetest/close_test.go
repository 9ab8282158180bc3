package edgebasetest

import (
	"net"
	"testing"
	"time"
)

// A connection that never sends a request (a client transport may dial one
// and then use another) does not hold Close up.
func TestCloseDropsConnectionsWithoutRequests(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // let the server accept it
	// Shutdown would wait for it until its 5 s deadline and fail.
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}
