package redact

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// UTF-16 text is the one common charset in which an address is not ASCII
// bytes, so every other form (URL-encoded, base64 token, digest) would be
// invisible in it. Such text is transcoded to UTF-8, redacted as text and
// transcoded back in its byte order, keeping a byte-order mark.

// utf16Order returns whether a charset is UTF-16, and its byte order.
func utf16Order(cs string, b []byte) (isUTF16, bigEndian, bom bool) {
	switch strings.ToLower(cs) {
	case "utf-16le", "utf16le":
		return true, false, len(b) >= 2 && b[0] == 0xFF && b[1] == 0xFE
	case "utf-16be", "utf16be":
		return true, true, len(b) >= 2 && b[0] == 0xFE && b[1] == 0xFF
	case "utf-16", "utf16", "ucs-2", "iso-10646-ucs-2":
		if len(b) >= 2 && b[0] == 0xFF && b[1] == 0xFE {
			return true, false, true
		}
		return true, true, len(b) >= 2 && b[0] == 0xFE && b[1] == 0xFF
	}
	return false, false, false
}

func utf16ToUTF8(b []byte, bigEndian, bom bool) []byte {
	if bom {
		b = b[2:]
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		if bigEndian {
			u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		} else {
			u[i] = uint16(b[2*i+1])<<8 | uint16(b[2*i])
		}
	}
	out := make([]byte, 0, len(u))
	for _, r := range utf16.Decode(u) {
		out = utf8.AppendRune(out, r)
	}
	return out
}

func utf8ToUTF16(s []byte, bigEndian, bom bool, odd []byte) []byte {
	var out []byte
	if bom {
		if bigEndian {
			out = append(out, 0xFE, 0xFF)
		} else {
			out = append(out, 0xFF, 0xFE)
		}
	}
	out = append(out, utf16Bytes(string(s), bigEndian)...)
	// An odd trailing byte is not UTF-16; keep it rather than lose it.
	return append(out, odd...)
}
