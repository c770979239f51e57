package service

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// AMQP 0-9-1 frame types, and the octet that ends every frame.
const (
	amqpMethod    = 1
	amqpHeader    = 2
	amqpBody      = 3
	amqpHeartbeat = 8
	amqpFrameEnd  = 0xCE
)

// amqpMaxFrame bounds the size of a frame the proxy accepts, far above
// what a client negotiates (RabbitMQ's default frame_max is 128 KiB).
const amqpMaxFrame = 64 << 20

// The methods the proxy reads, as (class id << 16 | method id).
const (
	amqpConnectionClose   = 10<<16 | 50
	amqpConnectionCloseOK = 10<<16 | 51
	amqpChannelOpen       = 20<<16 | 10
	amqpChannelClose      = 20<<16 | 40
	amqpChannelCloseOK    = 20<<16 | 41
	amqpBasicPublish      = 60<<16 | 40
	amqpBasicDeliver      = 60<<16 | 60
	amqpBasicGetOK        = 60<<16 | 71
	amqpBasicAck          = 60<<16 | 80
	amqpBasicReject       = 60<<16 | 90
	amqpBasicNack         = 60<<16 | 120
	amqpConfirmSelect     = 85<<16 | 10
)

// amqpFrame is one frame: its type, channel and payload, and the whole
// frame as read, forwarded as is.
type amqpFrame struct {
	typ     byte
	channel uint16
	payload []byte
	raw     []byte
}

// method returns the class and method ids of a method frame (0 for any
// other frame).
func (f amqpFrame) method() uint32 {
	if f.typ != amqpMethod || len(f.payload) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(f.payload)
}

// args returns the arguments of a method frame.
func (f amqpFrame) args() *amqpReader { return &amqpReader{b: f.payload[4:]} }

// amqpProtocolHeader is what a client sends first: "AMQP" 0 0 9 1.
var amqpProtocolHeader = []byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}

// readAMQPFrame reads one frame.
func readAMQPFrame(r *bufio.Reader) (amqpFrame, error) {
	var head [7]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return amqpFrame{}, err
	}
	size := binary.BigEndian.Uint32(head[3:])
	if size > amqpMaxFrame {
		return amqpFrame{}, fmt.Errorf("amqp proxy: a frame of %d bytes", size)
	}
	raw := make([]byte, 7+int(size)+1)
	copy(raw, head[:])
	if _, err := io.ReadFull(r, raw[7:]); err != nil {
		return amqpFrame{}, err
	}
	if raw[len(raw)-1] != amqpFrameEnd {
		return amqpFrame{}, fmt.Errorf("amqp proxy: frame of type %d on channel %d does not end with 0xCE", head[0], binary.BigEndian.Uint16(head[1:]))
	}
	return amqpFrame{typ: head[0], channel: binary.BigEndian.Uint16(head[1:]), payload: raw[7 : 7+size], raw: raw}, nil
}

// amqpFrameBytes encodes a frame.
func amqpFrameBytes(typ byte, channel uint16, payload []byte) []byte {
	b := make([]byte, 0, 8+len(payload))
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, channel)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return append(b, amqpFrameEnd)
}

// amqpMethodFrame encodes a method frame of method m with its arguments.
func amqpMethodFrame(channel uint16, m uint32, args []byte) []byte {
	p := binary.BigEndian.AppendUint32(nil, m)
	return amqpFrameBytes(amqpMethod, channel, append(p, args...))
}

// amqpAckFrame encodes basic.ack (m = amqpBasicAck) or basic.nack (with
// requeue set) of one delivery tag, multiple unset.
func amqpAckFrame(channel uint16, m uint32, tag uint64) []byte {
	args := binary.BigEndian.AppendUint64(nil, tag)
	bits := byte(0)
	if m == amqpBasicNack {
		bits = 2 // requeue
	}
	return amqpMethodFrame(channel, m, append(args, bits))
}

// amqpRejectFrame encodes basic.reject of tag with requeue set.
func amqpRejectFrame(channel uint16, tag uint64) []byte {
	return amqpMethodFrame(channel, amqpBasicReject, append(binary.BigEndian.AppendUint64(nil, tag), 1))
}

// amqpCloseFrame encodes channel.close with a reply code and text.
func amqpCloseFrame(channel uint16, code uint16, text string) []byte {
	if len(text) > 255 {
		text = text[:255]
	}
	args := binary.BigEndian.AppendUint16(nil, code)
	args = append(args, byte(len(text)))
	args = append(args, text...)
	args = binary.BigEndian.AppendUint32(args, 0) // class id, method id
	return amqpMethodFrame(channel, amqpChannelClose, args)
}

// amqpReader decodes the fields of a method's arguments or of a content
// header; the first error sticks.
type amqpReader struct {
	b   []byte
	err error
}

var errAMQPShort = errors.New("amqp proxy: a frame ends inside a field")

func (r *amqpReader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		if r.err == nil {
			r.err = errAMQPShort
		}
		return make([]byte, max(n, 0))
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *amqpReader) octet() byte      { return r.take(1)[0] }
func (r *amqpReader) short() uint16    { return binary.BigEndian.Uint16(r.take(2)) }
func (r *amqpReader) long() uint32     { return binary.BigEndian.Uint32(r.take(4)) }
func (r *amqpReader) longlong() uint64 { return binary.BigEndian.Uint64(r.take(8)) }
func (r *amqpReader) shortstr() string { return string(r.take(int(r.octet()))) }
func (r *amqpReader) longstr() []byte  { return r.take(int(r.long())) }

// table reads a field table, keeping its string values (the contract's
// headers are strings; other values are skipped).
func (r *amqpReader) table() map[string]string {
	t := map[string]string{}
	body := &amqpReader{b: r.longstr()}
	if r.err != nil {
		return t
	}
	for len(body.b) > 0 && body.err == nil {
		name := body.shortstr()
		if v, ok := body.value(); ok {
			t[name] = v
		}
	}
	return t
}

// value reads one field value: its text when it is a string, else
// skipped.
func (r *amqpReader) value() (string, bool) {
	switch typ := r.octet(); typ {
	case 'S', 'x':
		return string(r.longstr()), true
	case 't', 'b', 'B':
		r.take(1)
	case 's', 'u': // RabbitMQ's int16 and uint16
		r.take(2)
	case 'I', 'i', 'f':
		r.take(4)
	case 'l', 'd', 'T':
		r.take(8)
	case 'D':
		r.take(5)
	case 'A', 'F':
		r.longstr()
	case 'V':
	default:
		if r.err == nil {
			r.err = fmt.Errorf("amqp proxy: field value of unknown type %q", typ)
		}
	}
	return "", false
}

// amqpProps are the properties of a content header the proxy reads.
type amqpProps struct {
	bodySize  uint64
	messageID string
	typ       string
	headers   map[string]string
}

// parseAMQPHeader reads a content header frame's payload.
func parseAMQPHeader(p []byte) (amqpProps, error) {
	r := &amqpReader{b: p}
	r.short() // class id
	r.short() // weight
	props := amqpProps{bodySize: r.longlong()}
	flags := r.short()
	if flags&1 != 0 {
		return props, errors.New("amqp proxy: a content header with more than 15 properties")
	}
	has := func(bit int) bool { return flags&(1<<bit) != 0 }
	if has(15) { // content-type
		r.shortstr()
	}
	if has(14) { // content-encoding
		r.shortstr()
	}
	if has(13) {
		props.headers = r.table()
	}
	if has(12) { // delivery-mode
		r.octet()
	}
	if has(11) { // priority
		r.octet()
	}
	if has(10) { // correlation-id
		r.shortstr()
	}
	if has(9) { // reply-to
		r.shortstr()
	}
	if has(8) { // expiration
		r.shortstr()
	}
	if has(7) {
		props.messageID = r.shortstr()
	}
	if has(6) { // timestamp
		r.longlong()
	}
	if has(5) {
		props.typ = r.shortstr()
	}
	return props, r.err
}
