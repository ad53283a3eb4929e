/*
 * utf8.c — length of one well-formed UTF-8 character (RFC 3629), for code
 * that must cut or clean outside text by character. Load: per byte of
 * error messages and log lines; no allocation.
 */
#include "utf8.h"

size_t is_utf8_char_len(const unsigned char *s, size_t n) {
    unsigned c = s[0], cp;
    size_t len, i, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, min = 0x80, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, min = 0x800, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}
