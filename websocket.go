package caddysnake

// #include <stdlib.h>
// #include "caddysnake.h"
import "C"

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// WebSockets for ASGI apps. The upgrade and framing are done in Go by
// github.com/coder/websocket; the app sees the ASGI websocket scope and
// events. A connection costs two goroutines (this request's, and a reader)
// and no Python thread; an idle one costs nothing in Python.
//
// Flow control: the reader reads ahead of the app while fewer than wsQueue
// messages and wsQueueBytes bytes are unreceived, so a flood from the client
// stalls in TCP. The app hands back what it received in lumps (a quarter of
// either limit), not per message: one crossing for many messages, and the
// lump is smaller than the window, so the reader never waits on an app that
// has nothing left to receive. Sends return to the app while little is
// unwritten (the driver's window): a slow client slows the app.

const (
	wsQueue      = C.CS_WS_QUEUE       // messages read ahead of the app
	wsQueueBytes = C.CS_WS_QUEUE_BYTES // bytes read ahead; one larger message still passes
)

// wsWindow counts what the reader has read and the app not yet received.
// The reader waits on wake; the request goroutine credits.
type wsWindow struct {
	msgs, bytes atomic.Int64
	wake        chan struct{}
}

func newWSWindow() *wsWindow { return &wsWindow{wake: make(chan struct{}, 1)} }

func (w *wsWindow) open() bool { return w.msgs.Load() < wsQueue && w.bytes.Load() < wsQueueBytes }

func (w *wsWindow) read(n int) {
	w.msgs.Add(1)
	w.bytes.Add(int64(n))
}

// credit returns what the app received; it never blocks.
func (w *wsWindow) credit(msgs, bytes int) {
	w.msgs.Add(-int64(msgs))
	w.bytes.Add(-int64(bytes))
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// wait blocks until the window is open; false once ctx is done.
func (w *wsWindow) wait(ctx context.Context) bool {
	for !w.open() {
		select {
		case <-w.wake:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

type wsOptions struct {
	maxMessage   int64
	pingInterval time.Duration
	pingTimeout  time.Duration
	compression  bool
}

func (p *Python) wsOptions() wsOptions {
	o := wsOptions{maxMessage: 16 << 20, pingInterval: 20 * time.Second, pingTimeout: 20 * time.Second,
		compression: p.WSCompression != "off"}
	if p.WSMaxMessageSize > 0 {
		o.maxMessage = p.WSMaxMessageSize
	}
	if p.WSPingInterval != nil {
		o.pingInterval = time.Duration(*p.WSPingInterval)
	}
	if p.WSPingTimeout > 0 {
		o.pingTimeout = time.Duration(p.WSPingTimeout)
	}
	return o
}

// isWebSocket reports an HTTP/1.1 WebSocket upgrade request (RFC 6455 4.1).
func isWebSocket(r *http.Request) bool {
	return r.Method == http.MethodGet && r.ProtoAtLeast(1, 1) &&
		headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// runWS serves a WebSocket request: until the app accepts, it may close
// (→ 403) or send an HTTP response instead (websocket.http.response).
func (rq *asgiRequest) runWS(o wsOptions) error {
	gone := rq.r.Context().Done()
	for {
		select {
		case <-rq.cmds.ready:
			batch := rq.cmds.take()
			for i := range batch {
				c := &batch[i]
				switch c.kind {
				case cmdWSAccept:
					rq.cmds.putBack(batch[i+1:]) // for serveWS
					return rq.acceptWS(*c, o)
				case cmdWSClose:
					http.Error(rq.w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
					rq.pushDisconnect(int(websocket.StatusAbnormalClosure), "")
					return nil
				case cmdDone:
					if !rq.sent {
						// Raised, or returned without accepting, closing or
						// answering: a server error (the driver logged which), as
						// under uvicorn. Only websocket.close refuses with 403.
						http.Error(rq.w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
						return nil
					}
					rq.handle_(c) // mid denial response: aborts
				default: // websocket.http.response.start / .body
					if rq.handle_(c) {
						rq.settle()
						rq.pushDisconnect(int(websocket.StatusAbnormalClosure), "")
						return nil
					}
				}
			}
			if rq.settle() { // the denial response's streamed chunks
				return nil
			}
		case <-gone:
			rq.pushDisconnect(int(websocket.StatusAbnormalClosure), "")
			rq.clientClosed()
			return nil
		case <-rq.closing: // not accepted yet, and the app is being retired
			http.Error(rq.w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
			rq.pushDisconnect(int(websocket.StatusGoingAway), "")
			return nil
		}
	}
}

func (rq *asgiRequest) acceptWS(c asgiCmd, o wsOptions) error {
	h := rq.w.Header()
	for k, v := range c.header {
		h[k] = v
	}
	opts := &websocket.AcceptOptions{
		// Origin policy is the app's (Channels' AllowedHostsOriginValidator,
		// Starlette middleware), as under uvicorn.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	}
	if o.compression {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	if c.path != "" {
		opts.Subprotocols = []string{c.path}
	}
	conn, err := websocket.Accept(rq.w, rq.r, opts)
	if err != nil {
		pyLogger.Debug("websocket upgrade failed", zap.Error(err))
		rq.pushDisconnect(int(websocket.StatusAbnormalClosure), "")
		return nil
	}
	conn.SetReadLimit(o.maxMessage)
	return rq.serveWS(conn, o)
}

// serveWS runs an accepted connection until it closes.
func (rq *asgiRequest) serveWS(conn *websocket.Conn, o wsOptions) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer conn.CloseNow()
	win := newWSWindow()
	readerDone := make(chan struct{})
	go rq.readWS(ctx, conn, win, readerDone)
	if o.pingInterval > 0 {
		go keepAlive(ctx, cancel, conn, o.pingInterval, o.pingTimeout)
	}
	closeWith := func(code websocket.StatusCode, reason string) error {
		rq.settle()             // what was written before is acknowledged
		if !rq.wsEnded.Load() { // after a protocol error there is nothing to close politely
			_ = conn.Close(code, reason) // waits (bounded) for the client's close frame
		}
		cancel()
		<-readerDone
		return nil
	}
	for {
		select {
		case <-rq.cmds.ready:
			batch := rq.cmds.take()
			for i := range batch {
				c := &batch[i]
				switch c.kind {
				case cmdWantBody: // the app received messages: as many more may be read
					win.credit(c.status, c.size)
				case cmdWSSend:
					typ := websocket.MessageBinary
					if c.more {
						typ = websocket.MessageText
					}
					// A large message is a view of the app's object: its
					// ref goes back with the acknowledgement (or alone).
					// The batch's messages are acknowledged together.
					ref := c.ref
					c.ref = nil
					if err := conn.Write(ctx, typ, c.body); err != nil {
						rq.loop.release(ref)
						rq.pushDisconnect(int(websocket.StatusAbnormalClosure), "")
						cancel()
						<-readerDone
						return nil
					}
					rq.taken(ref)
				case cmdWSClose:
					return closeWith(websocket.StatusCode(c.status), c.path)
				case cmdDone:
					if c.more {
						return closeWith(websocket.StatusInternalError, "")
					}
					return closeWith(websocket.StatusNormalClosure, "")
				}
			}
			rq.settle()
		case <-readerDone: // the client closed, dropped, or broke the protocol
			return nil
		case <-rq.closing: // reload or stop: the client should reconnect
			return closeWith(websocket.StatusGoingAway, "server shutting down")
		}
	}
}

// readWS reads messages while the window is open and queues them for the
// app. Whatever ends the connection is reported as websocket.disconnect.
func (rq *asgiRequest) readWS(ctx context.Context, conn *websocket.Conn, win *wsWindow, done chan struct{}) {
	defer close(done)
	for {
		if !win.wait(ctx) {
			return
		}
		typ, data, err := conn.Read(ctx)
		if err != nil {
			rq.wsEnded.Store(true)
			code, reason := closeStatus(err)
			rq.pushDisconnect(code, reason)
			return
		}
		if typ == websocket.MessageText && !utf8.Valid(data) {
			rq.wsEnded.Store(true)
			_ = conn.Close(websocket.StatusInvalidFramePayloadData, "invalid UTF-8 in a text message")
			rq.pushDisconnect(int(websocket.StatusInvalidFramePayloadData), "")
			return
		}
		win.read(len(data))
		flags := 0
		if typ == websocket.MessageText {
			flags = 1
		}
		var buf unsafe.Pointer
		if len(data) > 0 {
			buf = C.CBytes(data) // the loop thread frees it
		}
		rq.loop.push(C.cs_event{handle: C.uintptr_t(rq.handle), data: (*C.char)(buf),
			len: C.size_t(len(data)), kind: C.CS_EV_WS_MSG, flags: C.int(flags)})
	}
}

// closeStatus turns a read error into the code the app sees: the client's
// close code, 1005 when its close frame had none, 1006 when the connection
// dropped without one, 1009 for an oversized message.
func closeStatus(err error) (int, string) {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return int(ce.Code), ce.Reason
	}
	if strings.Contains(err.Error(), "read limited at") {
		return int(websocket.StatusMessageTooBig), ""
	}
	return int(websocket.StatusAbnormalClosure), ""
}

func (rq *asgiRequest) pushDisconnect(code int, reason string) {
	var buf unsafe.Pointer
	if reason != "" {
		buf = C.CBytes([]byte(reason))
	}
	rq.loop.push(C.cs_event{handle: C.uintptr_t(rq.handle), data: (*C.char)(buf),
		len: C.size_t(len(reason)), kind: C.CS_EV_DISCONNECT, flags: C.int(code)})
}

// deadClientWait is how long a close frame to a client that stopped
// answering pings gets to go out before the connection is dropped.
const deadClientWait = 100 * time.Millisecond

// keepAlive pings the client; a client that does not answer in time is
// sent a close frame with 1011 and dropped, as the websockets library behind
// uvicorn does. Close alone would wait 5 s more for the dead client's
// reply; stop (the reader's context: cancelling it closes the connection)
// ends that wait once the close frame has had deadClientWait to go out.
func keepAlive(ctx context.Context, stop context.CancelFunc, conn *websocket.Conn, interval, timeout time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, timeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					closed := make(chan struct{})
					go func() {
						_ = conn.Close(websocket.StatusInternalError, "keepalive ping timeout")
						close(closed)
					}()
					select {
					case <-closed:
					case <-time.After(deadClientWait):
						stop()
					}
				}
				return
			}
		}
	}
}
