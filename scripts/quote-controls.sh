#!/usr/bin/env bash
# quote-controls.sh: copies standard input to standard output with every character a terminal would act
# on written as an escape, so that text from vCenter or a VMA (a VM named with an escape sequence) cannot
# move the cursor, rewrite a line, set the window title or reorder what follows: C0 controls but tab and
# newline (\x1b, \r, \x07), DEL (\x7f), C1 controls (\u009b) and the invisible bidi and zero-width
# characters (\u202e, \u200b, \u2066). Everything else, other UTF-8 included, passes as it is. make demo
# prints what it got from the APIs through it. Byte-wise, so invalid UTF-8 passes through unharmed.
set -euo pipefail
exec env LC_ALL=C perl -pe '
  BEGIN { $| = 1 }
  s/([\x00-\x08\x0b-\x1f\x7f])/sprintf("\\x%02x", ord $1)/ge;
  s/\xc2([\x80-\x9f])/sprintf("\\u%04x", ord $1)/ge;
  s/\xe2\x80([\x8b-\x8f\xa8-\xae])/sprintf("\\u%04x", 0x2000 + ord($1) - 0x80)/ge;
  s/\xe2\x81([\xa6-\xa9])/sprintf("\\u%04x", 0x2040 + ord($1) - 0x80)/ge;
'
