package caddysnake

// Decoding of the app's messages, which the C side has already checked
// (header syntax, Content-Length, status range, close codes) and copied out
// of Python (but for large body chunks, see cs_msg), so nothing here can
// fail.

// #include "caddysnake.h"
import "C"

import (
	"net/http"
	"os"
	"unsafe"
)

// decodeMsg copies one C message into Go memory. It runs on the delivering
// goroutine, so building the header map costs the loop thread nothing.
func decodeMsg(m *C.cs_msg) asgiCmd {
	c := asgiCmd{kind: int(m.kind), status: int(m.status), more: m.flags != 0}
	if c.kind == cmdStart {
		c.more, c.now = m.flags&C.CS_START_TRAILERS != 0, m.flags&C.CS_START_NOW != 0
	}
	data := unsafe.Slice((*byte)(unsafe.Pointer(m.data)), int(m.len))
	if m.ref != nil {
		// By reference (a large body chunk or WebSocket message, or a read
		// buffer for the next body chunk): a view of the app's object, kept
		// alive by the reference c takes over (cs_asgi_free_msgs skips it
		// now).
		c.body, c.ref = data, m.ref
		m.ref = nil
		return c
	}
	switch c.kind {
	case cmdStart, cmdEarlyHint, cmdTrailers, cmdWSAccept:
		kv := unsafe.Slice(m.hdr, int(m.nhdr)*2)
		c.header = make(http.Header, int(m.nhdr))
		addAppHeaders(c.header, kv)
		if c.kind == cmdWSAccept {
			// Offered by the client: the driver checked it against the scope.
			if sub := c.header.Get("Sec-Websocket-Protocol"); sub != "" {
				c.path = sub
				delete(c.header, "Sec-Websocket-Protocol")
			}
		}
	case cmdBody:
		c.body = getChunk(len(data)) // back to the pool once written
		copy(c.body, data)
	case cmdWSSend:
		c.body = append([]byte(nil), data...)
	case cmdWantBody:
		c.size = int(m.flags)
	case cmdPathsend:
		// The file is open already (C took it over from send()); Go owns
		// it now (dropCmd or sendFile closes it).
		c.file, c.size = os.NewFile(uintptr(m.fd), string(data)), int(m.size)
		m.fd = -1
	case cmdWSClose:
		c.path = string(data)
	}
	return c
}
