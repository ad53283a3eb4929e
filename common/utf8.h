/*
 * utf8.h — the one UTF-8 decoding rule of both services.
 *
 * JSON (jansson) refuses a string that is not well-formed UTF-8, so every
 * text built from outside input (an ERP's answer, a 422 entry, a log line)
 * is cut and cleaned by character with this function, never by byte.
 */
#ifndef INVSYNC_UTF8_H
#define INVSYNC_UTF8_H

#include <stddef.h>

/*
 * Bytes of the well-formed UTF-8 character at s, with n bytes readable
 * (n >= 1), or 0 when there is none: a stray continuation byte, a sequence
 * cut by n, an overlong form, a surrogate (U+D800..U+DFFF) or a code point
 * above U+10FFFF. A NUL byte is a 1-byte character: callers with
 * NUL-terminated strings stop at it themselves.
 */
size_t is_utf8_char_len(const unsigned char *s, size_t n);

#endif
