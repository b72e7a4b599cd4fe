package zoo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// TCPPort is the port the tcp workload listens on.
const TCPPort = 7000

func init() {
	register(&Workload{
		Name:     "tcp",
		Summary:  "a TCP server with a long-lived connection from tcp-client on another host; numbered messages echoed in order",
		Category: "static/socket-tcp (established TCP connections)",
		Net:      true,
		run:      runTCPServer,
	})
	register(&Workload{
		Name:     "tcp-client",
		Summary:  "the client of tcp: ARGS name the tcp workload (or are SERVER-IP:PORT LOCAL-IP); it binds an address that does not move",
		Category: "static/socket-tcp (established TCP connections)",
		Net:      true,
		run:      runTCPClient,
	})
}

// tcpState is what the server or client goroutine shares with the checker.
type tcpState struct {
	mu     sync.Mutex
	n      uint64 // messages exchanged in order
	peer   string
	err    error
	lastAt time.Time
}

func (s *tcpState) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *tcpState) check(what string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if s.peer == "" {
		return 0, errWaiting
	}
	return s.n, nil
}

// errWaiting is not a failure: the counter just does not move yet.
var errWaiting = errors.New("waiting for the connection")

// runTCPServer accepts one connection and echoes each 8-byte message after
// checking it is the next number. A second connection, a gap or a closed
// connection is a failure: the connection must survive migration.
func runTCPServer(ctx context.Context, r *reporter, _ []string) error {
	// Go's listeners speak MPTCP by default, which CRIU cannot dump.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", fmt.Sprintf(":%d", TCPPort))
	if err != nil {
		return fmt.Errorf("tcp: listen: %w", err)
	}
	st := &tcpState{}
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			st.fail(fmt.Errorf("tcp: accept: %w", err))
			return
		}
		st.mu.Lock()
		st.peer = conn.RemoteAddr().String()
		st.mu.Unlock()
		go func() {
			// Any later connection means the client lost the first one.
			for {
				c2, err := ln.Accept()
				if err != nil {
					return
				}
				st.fail(fmt.Errorf("tcp: a second connection came from %s", c2.RemoteAddr()))
				c2.Close()
			}
		}()
		var b [8]byte
		for want := uint64(0); ; want++ {
			if _, err := io.ReadFull(conn, b[:]); err != nil {
				st.fail(fmt.Errorf("tcp: connection from %s broke after %d messages: %w", st.peer, want, err))
				return
			}
			if v := binary.LittleEndian.Uint64(b[:]); v != want {
				st.fail(fmt.Errorf("tcp: got message %d, want %d", v, want))
				return
			}
			if _, err := conn.Write(b[:]); err != nil {
				st.fail(fmt.Errorf("tcp: echo %d: %w", want, err))
				return
			}
			st.mu.Lock()
			st.n = want + 1
			st.mu.Unlock()
		}
	}()
	return tcpLoop(ctx, r, st, "server")
}

// tcpLoop reports the exchange; the counter advances only with messages.
func tcpLoop(ctx context.Context, r *reporter, st *tcpState, side string) error {
	var last uint64
	t := time.NewTicker(StatusInterval)
	defer t.Stop()
	for {
		n, err := st.check(side)
		switch {
		case errors.Is(err, errWaiting):
			// The counter means messages: it stays put until the
			// connection is up, so verify fails without a peer.
			if werr := r.idle("no connection yet"); werr != nil {
				return werr
			}
		case err != nil:
			if werr := r.tick("", err); werr != nil {
				return werr
			}
		case n > last:
			last = n
			if werr := r.tick(fmt.Sprintf("%s: %d messages in order with %s", side, n, st.peer), nil); werr != nil {
				return werr
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// runTCPClient connects from a fixed local address and sends numbered
// messages, each echoed back before the next.
func runTCPClient(ctx context.Context, r *reporter, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("tcp-client: want SERVER-IP:PORT LOCAL-IP, got %q", args)
	}
	local := net.ParseIP(args[1])
	if local == nil {
		return fmt.Errorf("tcp-client: bad local address %q", args[1])
	}
	st := &tcpState{}
	go func() {
		var conn net.Conn
		var err error
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}, Timeout: 5 * time.Second}
		d.SetMultipathTCP(false)
		// The server may still be starting.
		for i := 0; i < 50; i++ {
			conn, err = d.DialContext(ctx, "tcp", args[0])
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			st.fail(fmt.Errorf("tcp-client: connect %s: %w", args[0], err))
			return
		}
		st.mu.Lock()
		st.peer = conn.RemoteAddr().String()
		st.mu.Unlock()
		var b [8]byte
		for i := uint64(0); ; i++ {
			binary.LittleEndian.PutUint64(b[:], i)
			if _, err := conn.Write(b[:]); err != nil {
				st.fail(fmt.Errorf("tcp-client: send %d: %w", i, err))
				return
			}
			if _, err := io.ReadFull(conn, b[:]); err != nil {
				st.fail(fmt.Errorf("tcp-client: connection to %s broke after %d messages: %w", st.peer, i, err))
				return
			}
			if v := binary.LittleEndian.Uint64(b[:]); v != i {
				st.fail(fmt.Errorf("tcp-client: echo %d, want %d", v, i))
				return
			}
			st.mu.Lock()
			st.n = i + 1
			st.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return tcpLoop(ctx, r, st, "client")
}
