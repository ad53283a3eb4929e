/*
 * status_page.h — the status page (erp-consumer/status_page.html) compiled
 * into the binary, served by the API at GET /.
 *
 * The definitions are generated at build time from the HTML file
 * ($(BUILD)/gen/status_page_html.c, a Makefile rule using `xxd -i`), so the
 * page ships with the binary and needs no file at run time. The bytes are
 * the file as is: UTF-8 HTML, not NUL-terminated.
 *
 * @locality any thread (read-only data).
 */
#ifndef INVSYNC_STATUS_PAGE_H
#define INVSYNC_STATUS_PAGE_H

#include <stddef.h>

extern const unsigned char status_page_html[]; /* the page's bytes */
extern const size_t status_page_html_len;      /* their number */

#endif
