package caddysnake

// Callbacks for the ASGI driver. They run on the event loop thread with the
// GIL held, so each must return at once: they validate, copy what they need
// into Go memory and queue a command for the request's goroutine. None of
// them blocks, and none keeps a pointer into Python memory. A successful
// callback returns CS_OK_FLUSH or CS_OK (see eventLoop.post).

// #include "caddysnake.h"
import "C"

import (
	"net/http"
	"runtime/cgo"
	"unsafe"
)

// asgiFor returns the live request behind a handle; nil once the request is
// over (its handle deleted), so late messages fail cleanly.
func asgiFor(h C.uintptr_t) (rq *asgiRequest) {
	defer func() { _ = recover() }() // Value panics on a deleted handle
	rq, _ = cgo.Handle(h).Value().(*asgiRequest)
	return rq
}

// enqueue queues a command for the request goroutine without blocking; it
// reaches the goroutine at the loop's next flush (see eventLoop.post).
func (rq *asgiRequest) enqueue(c asgiCmd) C.long {
	return rq.loop.post(rq, c)
}

const (
	hdrStart     = 1
	hdrEarlyHint = 2
	hdrTrailers  = 3
	hdrWSAccept  = 4
)

//export cs_go_asgi_headers
func cs_go_asgi_headers(h C.uintptr_t, kind, status C.int, hdrs *C.cs_str, n C.size_t, flags C.int) (rc C.long) {
	defer recoverTo(&rc)
	rq := asgiFor(h)
	if rq == nil {
		return C.CS_ERR_CLIENT_GONE
	}
	kv := unsafe.Slice(hdrs, int(n)*2)
	if _, rc := checkAppHeaders(kv); rc != C.CS_OK {
		return rc
	}
	header := make(http.Header, n)
	addAppHeaders(header, kv)
	c := asgiCmd{header: header, more: flags != 0}
	switch kind {
	case hdrStart:
		if status < 200 || status > 999 {
			return C.CS_ERR_BAD_STATUS
		}
		c.kind, c.status = cmdStart, int(status)
	case hdrEarlyHint:
		c.kind = cmdEarlyHint
	case hdrTrailers:
		c.kind = cmdTrailers
	case hdrWSAccept:
		c.kind = cmdWSAccept
		if sub := header.Get("Sec-Websocket-Protocol"); sub != "" {
			if !offeredSubprotocol(rq.r, sub) {
				return C.CS_ERR_BAD_SUBPROTOCOL
			}
			c.path = sub
			delete(header, "Sec-Websocket-Protocol")
		}
	default:
		return C.CS_ERR_BAD_STATE
	}
	return rq.enqueue(c)
}

//export cs_go_asgi_body
func cs_go_asgi_body(h C.uintptr_t, data *C.char, n C.size_t, more C.int) (rc C.long) {
	defer recoverTo(&rc)
	rq := asgiFor(h)
	if rq == nil {
		return C.CS_ERR_CLIENT_GONE
	}
	// Copied so the app may reuse or drop its buffer as soon as send()
	// returns (for a final chunk, that is immediately).
	b := getChunk(int(n))
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n)))
	return rq.enqueue(asgiCmd{kind: cmdBody, body: b, more: more != 0})
}

const (
	sigWantBody = 1
	sigDone     = 2
)

//export cs_go_asgi_signal
func cs_go_asgi_signal(h C.uintptr_t, what, arg C.int) (rc C.long) {
	defer recoverTo(&rc)
	rq := asgiFor(h)
	if rq == nil {
		return C.CS_ERR_CLIENT_GONE
	}
	switch what {
	case sigWantBody:
		return rq.enqueue(asgiCmd{kind: cmdWantBody})
	case sigDone:
		return rq.enqueue(asgiCmd{kind: cmdDone, more: arg != 0})
	}
	return C.CS_ERR_BAD_STATE
}

//export cs_go_asgi_pathsend
func cs_go_asgi_pathsend(h C.uintptr_t, path *C.char, n C.size_t) (rc C.long) {
	defer recoverTo(&rc)
	rq := asgiFor(h)
	if rq == nil {
		return C.CS_ERR_CLIENT_GONE
	}
	return rq.enqueue(asgiCmd{kind: cmdPathsend, path: C.GoStringN(path, C.int(n))})
}

const (
	wsOpSend  = 1
	wsOpClose = 2
)

// validCloseCode reports whether an app may send code in a close frame
// (RFC 6455 7.4: 1004-1006 and 1015 are reserved, 1016-2999 unassigned).
func validCloseCode(code int) bool {
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
}

//export cs_go_asgi_ws
func cs_go_asgi_ws(h C.uintptr_t, op, arg C.int, data *C.char, n C.size_t) (rc C.long) {
	defer recoverTo(&rc)
	rq := asgiFor(h)
	if rq == nil {
		return C.CS_ERR_CLIENT_GONE
	}
	b := C.GoBytes(unsafe.Pointer(data), C.int(n)) // a copy: the bytes belong to Python
	switch op {
	case wsOpSend:
		return rq.enqueue(asgiCmd{kind: cmdWSSend, body: b, more: arg != 0})
	case wsOpClose:
		if !validCloseCode(int(arg)) || len(b) > 123 {
			return C.CS_ERR_BAD_CLOSE
		}
		return rq.enqueue(asgiCmd{kind: cmdWSClose, status: int(arg), path: string(b)})
	}
	return C.CS_ERR_BAD_STATE
}
