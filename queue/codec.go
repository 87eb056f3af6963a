package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Key layout. Every routing key's records share a prefix so that one
// iterator bounded by [ack cursor, durable tail) reads a batch without ever
// stepping over the tombstones of what was delivered before.
//
//	d <routing key> 0x00 <seq: 8 bytes big endian>  -> record (pending)
//	f <routing key> 0x00 <seq: 8 bytes big endian>  -> failed record (dead letter)
//	m <routing key>                                 -> keyMeta
//	k <namespace> 0x00 <name>                       -> opaque value (tokens, journal)
//
// Routing keys may not contain 0x00, so prefixes never collide.
const (
	prefixData   = 'd'
	prefixFailed = 'f'
	prefixMeta   = 'm'
	prefixKV     = 'k'
)

const (
	recordVersion  = 1
	recordHeader   = 1 + 8 + 4 // version, enqueued-at, crc32c of payload
	failedVersion1 = 1         // no status code, no attempts
	failedVersion  = 2
	metaVersion    = 1
	maxRoutingKey  = 512
	maxReasonBytes = 4096
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func validKey(key string) error {
	switch {
	case key == "":
		return errors.New("routing key is empty")
	case len(key) > maxRoutingKey:
		return fmt.Errorf("routing key is %d bytes, more than the %d allowed", len(key), maxRoutingKey)
	case bytes.IndexByte([]byte(key), 0) >= 0:
		return errors.New("routing key contains a NUL byte")
	}
	return nil
}

func seqKey(prefix byte, key string, seq uint64) []byte {
	b := make([]byte, 0, len(key)+10)
	b = append(b, prefix)
	b = append(b, key...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, seq)
}

// keySpan is the whole [start, end) range of one routing key under prefix.
func keySpan(prefix byte, key string) (start, end []byte) {
	start = append(append([]byte{prefix}, key...), 0)
	end = append(append([]byte{prefix}, key...), 1)
	return start, end
}

func seqOf(k []byte) uint64 {
	if len(k) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

func metaKey(key string) []byte { return append([]byte{prefixMeta}, key...) }

func kvKey(ns, name string) []byte {
	b := make([]byte, 0, len(ns)+len(name)+2)
	b = append(b, prefixKV)
	b = append(b, ns...)
	b = append(b, 0)
	return append(b, name...)
}

// putRecord encodes a record into b, which is exactly
// recordHeader+len(payload) long (a Pebble batch's own memory).
func putRecord(b []byte, enqueuedAt time.Time, payload []byte) {
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(enqueuedAt.UnixNano()))
	binary.BigEndian.PutUint32(b[9:13], crc32.Checksum(payload, castagnoli))
	copy(b[recordHeader:], payload)
}

// putSeqKey writes seqKey(prefix, key, seq) into b, which is exactly
// len(key)+10 long.
func putSeqKey(b []byte, prefix byte, key string, seq uint64) {
	b[0] = prefix
	copy(b[1:], key)
	b[1+len(key)] = 0
	binary.BigEndian.PutUint64(b[2+len(key):], seq)
}

// decodeRecord returns an error for anything a crash, a bad disk or a bug
// could leave behind; the delivery actor quarantines such a record instead of
// crash-looping on it.
func decodeRecord(v []byte) (enqueuedAt time.Time, payload []byte, err error) {
	if len(v) < recordHeader {
		return time.Time{}, nil, fmt.Errorf("corrupt record: %d bytes, shorter than its header", len(v))
	}
	if v[0] != recordVersion {
		return time.Time{}, nil, fmt.Errorf("corrupt record: unknown version %d", v[0])
	}
	payload = v[recordHeader:]
	if crc := crc32.Checksum(payload, castagnoli); crc != binary.BigEndian.Uint32(v[9:13]) {
		return time.Time{}, nil, errors.New("corrupt record: checksum mismatch")
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC(), payload, nil
}

// failedInfo is what a dead letter records about its failure besides the
// record itself. Version 1 records have no code and no attempts (zero).
type failedInfo struct {
	at       time.Time
	code     int // the upstream's HTTP status, 0 when unknown
	attempts int // delivery attempts, the last one included
	reason   string
}

func encodeFailedInfo(fi failedInfo, raw []byte) []byte {
	reason := fi.reason
	if len(reason) > maxReasonBytes {
		reason = reason[:maxReasonBytes]
	}
	b := make([]byte, 0, 1+8+3*binary.MaxVarintLen64+len(reason)+len(raw))
	b = append(b, failedVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(fi.at.UnixNano()))
	b = binary.AppendUvarint(b, uint64(max(fi.code, 0)))
	b = binary.AppendUvarint(b, uint64(max(fi.attempts, 0)))
	b = binary.AppendUvarint(b, uint64(len(reason)))
	b = append(b, reason...)
	return append(b, raw...)
}

func decodeFailed(v []byte) (at time.Time, reason string, raw []byte, err error) {
	fi, raw, err := decodeFailedInfo(v)
	return fi.at, fi.reason, raw, err
}

// decodeFailedInfo reads both versions: dead letters written before status
// codes and attempts were kept stay readable.
func decodeFailedInfo(v []byte) (fi failedInfo, raw []byte, err error) {
	if len(v) < 9 || (v[0] != failedVersion1 && v[0] != failedVersion) {
		return fi, nil, errors.New("corrupt failed record")
	}
	fi.at = time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC()
	rest := v[9:]
	uv := func() (uint64, bool) {
		n, w := binary.Uvarint(rest)
		if w <= 0 {
			return 0, false
		}
		rest = rest[w:]
		return n, true
	}
	if v[0] == failedVersion {
		code, ok1 := uv()
		attempts, ok2 := uv()
		if !ok1 || !ok2 || code > 999 || attempts > 1<<31 {
			return failedInfo{}, nil, errors.New("corrupt failed record: bad status or attempts")
		}
		fi.code, fi.attempts = int(code), int(attempts)
	}
	n, ok := uv()
	if !ok || uint64(len(rest)) < n {
		return failedInfo{}, nil, errors.New("corrupt failed record: bad reason length")
	}
	fi.reason = string(rest[:n])
	return fi, rest[n:], nil
}

// keyMeta is what survives a restart of one routing key, so counters come
// back without scanning records. It is rewritten in the same batch as every
// change to the key, so it can never disagree with the records.
type keyMeta struct {
	head        uint64 // ack cursor: first seq not yet delivered or failed
	tail        uint64 // next seq to assign
	bytes       int64  // pending bytes, [head, tail)
	failed      int64  // dead letters kept under prefixFailed
	failedBytes int64
}

func (m keyMeta) pending() int64 { return int64(m.tail - m.head) }

func encodeMeta(m keyMeta) []byte {
	b := make([]byte, 0, 1+5*binary.MaxVarintLen64)
	b = append(b, metaVersion)
	b = binary.AppendUvarint(b, m.head)
	b = binary.AppendUvarint(b, m.tail)
	b = binary.AppendVarint(b, m.bytes)
	b = binary.AppendVarint(b, m.failed)
	return binary.AppendVarint(b, m.failedBytes)
}

func decodeMeta(v []byte) (keyMeta, error) {
	var m keyMeta
	if len(v) == 0 || v[0] != metaVersion {
		return m, errors.New("corrupt key metadata: bad version")
	}
	r := bytes.NewReader(v[1:])
	var err error
	get := func(signed bool) int64 {
		if err != nil {
			return 0
		}
		var x int64
		if signed {
			x, err = binary.ReadVarint(r)
		} else {
			var u uint64
			u, err = binary.ReadUvarint(r)
			x = int64(u)
		}
		return x
	}
	m.head = uint64(get(false))
	m.tail = uint64(get(false))
	m.bytes = get(true)
	m.failed = get(true)
	m.failedBytes = get(true)
	if err != nil {
		return keyMeta{}, fmt.Errorf("corrupt key metadata: %w", err)
	}
	if m.head > m.tail {
		return keyMeta{}, fmt.Errorf("corrupt key metadata: head %d past tail %d", m.head, m.tail)
	}
	return m, nil
}
