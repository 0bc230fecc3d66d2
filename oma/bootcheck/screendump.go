package bootcheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"os"
	"strconv"
	"time"
)

// screendump asks the qemu whose QMP socket is sock for a screendump of
// its display and writes it as PNG to path. For a guest that shows
// nothing on its serial console, this is what its screen said.
func screendump(ctx context.Context, sock, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return fmt.Errorf("screendump: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	r := bufio.NewReader(conn)
	ppm := path + ".ppm"
	defer os.Remove(ppm)
	if _, err := r.ReadBytes('\n'); err != nil { // the greeting
		return fmt.Errorf("screendump: QMP greeting: %w", err)
	}
	for _, cmd := range []any{
		map[string]any{"execute": "qmp_capabilities"},
		map[string]any{"execute": "screendump", "arguments": map[string]any{"filename": ppm}},
	} {
		if err := json.NewEncoder(conn).Encode(cmd); err != nil {
			return fmt.Errorf("screendump: %w", err)
		}
		if err := qmpReply(r); err != nil {
			return fmt.Errorf("screendump: %w", err)
		}
	}
	raw, err := os.ReadFile(ppm)
	if err != nil {
		return fmt.Errorf("screendump: %w", err)
	}
	img, err := decodePPM(raw)
	if err != nil {
		return fmt.Errorf("screendump: %w", err)
	}
	var out bytes.Buffer
	if err := png.Encode(&out, img); err != nil {
		return fmt.Errorf("screendump: %w", err)
	}
	return os.WriteFile(path, out.Bytes(), 0o600)
}

// qmpReply reads QMP messages until a command's reply, skipping events.
func qmpReply(r *bufio.Reader) error {
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return err
		}
		var m struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			return fmt.Errorf("QMP: %w", err)
		}
		if m.Error != nil {
			return fmt.Errorf("QMP: %s", m.Error.Desc)
		}
		if m.Return != nil {
			return nil
		}
	}
}

// decodePPM decodes a binary PPM (P6, maxval 255), as qemu writes them.
func decodePPM(b []byte) (image.Image, error) {
	fields := make([]int, 0, 3)
	if !bytes.HasPrefix(b, []byte("P6")) {
		return nil, fmt.Errorf("not a P6 PPM")
	}
	i := 2
	for len(fields) < 3 {
		for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
			i++
		}
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		n, err := strconv.Atoi(string(b[i:j]))
		if err != nil {
			return nil, fmt.Errorf("PPM header: %w", err)
		}
		fields = append(fields, n)
		i = j
	}
	i++ // the one whitespace after maxval
	w, h, maxval := fields[0], fields[1], fields[2]
	if maxval != 255 || w <= 0 || h <= 0 || len(b)-i < w*h*3 {
		return nil, fmt.Errorf("PPM %dx%d maxval %d with %d bytes of pixels", w, h, maxval, len(b)-i)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	px := b[i:]
	for y := range h {
		for x := range w {
			o := (y*w + x) * 3
			img.Set(x, y, color.RGBA{px[o], px[o+1], px[o+2], 255})
		}
	}
	return img, nil
}
