/*
 * httpd.c — the libmicrohttpd wrapper behind httpd.h: listen-address
 * parsing, a route table, whole request bodies with a size cap, JSON
 * responses.
 *
 * Expected load: the MES posting movements (hundreds per second at peak,
 * bodies of a few KiB), Prometheus scrapes, health probes and the odd admin
 * call. The daemon runs MHD's internal polling threads (a pool of `threads`
 * workers on epoll); each connection lives on one worker, and that worker
 * calls the access handler once with the headers, once per body chunk and
 * once more at the end. The body is collected into a per-connection buffer
 * (con_cls) that never grows beyond max_body. A Content-Length over max_body
 * is answered with 413 on the first call, before any of the body is read. A
 * chunked body is found too large while collecting: from then on it is read
 * and dropped, never stored, and the 413 goes out at its end (MHD 0.9.75
 * refuses a response queued mid-body); past HTTPD_DISCARD_MAX dropped bytes
 * the connection is closed instead. Routing happens on the first call, so
 * 404/405 also go out without reading a body.
 *
 * We bind the listening socket ourselves (then hand it to MHD) so that an
 * ephemeral port can be read back with getsockname and a bad address is a
 * clear configuration error rather than an MHD start failure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "httpd.h"
#include "log.h"

#define HTTPD_BACKLOG      128
#define HTTPD_IDLE_TIMEOUT 60u   /* seconds a keep-alive connection may sit idle */
#define HTTPD_DRAIN_MS     10000 /* at stop: how long requests in flight may take to finish */
/* Bytes of an oversized chunked body read and dropped before hanging up:
 * the larger of this and max_body, so that a batch up to twice the limit
 * gets its 413 (an MES that only sees the connection close takes it for a
 * passing fault and sends the same batch again, for ever). */
#define HTTPD_DISCARD_MIN (1024 * 1024)

struct is_httpd {
    struct MHD_Daemon *daemon;
    is_http_route_t *routes; /* deep copy: method and path strings owned */
    size_t n_routes;
    void *ctx;         /* handed to every handler */
    size_t max_body;   /* bytes; a larger request body gets 413 */
    uint16_t port;     /* the bound port (the real one when 0 was asked) */
    atomic_int active; /* requests from their headers until their answer is sent */
};

/* Per-connection state (MHD's con_cls), one per request. */
typedef struct conn_state {
    const is_http_route_t *route; /* matched on the first call */
    char *buf;                    /* body so far, NUL-terminated; NULL while empty */
    size_t len;                   /* bytes in buf */
    size_t cap;                   /* allocated bytes in buf (room for len + NUL) */
    int too_large;                /* body over max_body: discard the rest, answer 413 */
    size_t discarded;             /* bytes dropped since too_large was set */
    int answered;                 /* a response is queued: ignore further calls */
} conn_state_t;

/* ---- request helpers --------------------------------------------------- */

const char *is_http_header(const is_http_request_t *req, const char *name) {
    if (!req || !req->conn || !name)
        return NULL;
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *is_http_query(const is_http_request_t *req, const char *name) {
    if (!req || !req->conn || !name)
        return NULL;
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

int is_http_token_valid(const char *tok) {
    if (!tok || !*tok)
        return 0;
    for (; *tok; tok++)
        if ((unsigned char)*tok <= 0x20 || (unsigned char)*tok >= 0x7f)
            return 0;
    return 1;
}

typedef struct query_check {
    const char *const *names;
    char *unknown; /* per-thread buffer */
    size_t size;
    int found;
} query_check_t;

static enum MHD_Result query_known(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
    query_check_t *qc = cls;
    (void)kind;
    (void)value;
    for (size_t i = 0; qc->names[i]; i++)
        if (key && strcmp(key, qc->names[i]) == 0)
            return MHD_YES;
    snprintf(qc->unknown, qc->size, "%s", key ? key : "");
    qc->found = 1;
    return MHD_NO; /* stop at the first */
}

const char *is_http_query_unknown(const is_http_request_t *req, const char *const *names) {
    static _Thread_local char buf[128];
    query_check_t qc = {names, buf, sizeof(buf), 0};
    if (!req || !req->conn || !names)
        return NULL;
    buf[0] = '\0';
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_known, &qc);
    return qc.found ? buf : NULL;
}

/* The scheme is case-insensitive (RFC 7235); the token is one word.
 * Whitespace around it is not part of it (RFC 7230 optional whitespace):
 * the token is copied without it into a per-thread buffer. */
const char *is_http_bearer(const is_http_request_t *req) {
    static _Thread_local char buf[1024];
    const char *v = is_http_header(req, "Authorization");
    const char *tok, *p;
    size_t len;

    if (!v)
        return NULL;
    while (*v == ' ' || *v == '\t')
        v++;
    if (strncasecmp(v, "Bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t'))
        return NULL;
    tok = v + 6;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    for (p = tok; *p && *p != ' ' && *p != '\t'; p++)
        ;
    len = (size_t)(p - tok);
    while (*p == ' ' || *p == '\t')
        p++;
    if (len == 0 || *p || len >= sizeof(buf))
        return NULL; /* none, two words, or longer than any configured token */
    memcpy(buf, tok, len);
    buf[len] = '\0';
    return buf;
}

/* ---- response helpers -------------------------------------------------- */

static void resp_set_body(is_http_response_t *resp, int status, const char *content_type,
                          char *body, size_t len) {
    free(resp->body);
    resp->status = status;
    resp->content_type = content_type;
    resp->body = body;
    resp->body_len = len;
}

/* 500 with a fixed body, for when building the real one failed. */
static void resp_internal_error(is_http_response_t *resp) {
    static const char msg[] = "{\"error\":\"internal error building the response\"}";
    char *body = malloc(sizeof msg);

    if (body)
        memcpy(body, msg, sizeof msg);
    resp_set_body(resp, 500, "application/json", body, body ? sizeof msg - 1 : 0);
}

void is_http_respond_json(is_http_response_t *resp, int status, json_t *body) {
    char *text;

    if (!resp) {
        json_decref(body);
        return;
    }
    /* 15 significant digits: 9.268 stays 9.268 (the default %.17g shows the
     * binary error, 9.2680000000000007); epoch seconds keep their ms. */
    text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(body);
    if (!text) {
        resp_internal_error(resp);
        return;
    }
    resp_set_body(resp, status, "application/json", text, strlen(text));
}

/* json_string refuses invalid UTF-8 (e.g. a path with %FF): replace any
 * byte outside printable ASCII by '?' so the error still goes out. */
static json_t *json_string_lossy(const char *s) {
    json_t *j = json_string(s);
    char *copy;

    if (j)
        return j;
    copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    }
    j = json_string(copy);
    free(copy);
    return j;
}

void is_http_respond_error(is_http_response_t *resp, int status, const char *fmt, ...) {
    char msg[512];
    json_t *obj, *str;
    va_list ap;

    if (!resp)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    obj = json_object();
    str = json_string_lossy(msg);
    if (!obj || !str || json_object_set_new(obj, "error", str) != 0) {
        json_decref(obj);
        resp_internal_error(resp);
        return;
    }
    is_http_respond_json(resp, status, obj);
}

void is_http_respond_text(is_http_response_t *resp, int status, const char *content_type,
                          const char *text, size_t len) {
    char *body;

    if (!resp)
        return;
    if (!text)
        len = 0;
    body = malloc(len + 1);
    if (!body) {
        resp_internal_error(resp);
        return;
    }
    if (len)
        memcpy(body, text, len);
    body[len] = '\0';
    resp_set_body(resp, status, content_type ? content_type : "text/plain; charset=utf-8", body,
                  len);
}

/* ---- routing ----------------------------------------------------------- */

static int path_matches(const char *pattern, const char *path) {
    size_t n = strlen(pattern);

    if (n && pattern[n - 1] == '*')
        return strncmp(pattern, path, n - 1) == 0;
    return strcmp(pattern, path) == 0;
}

/*
 * The first route (in table order) matching path and method; NULL otherwise,
 * with *path_known set when some route matches the path only. A HEAD is
 * served by the GET route (RFC 9110 §9.3.2; MHD sends the headers only), so
 * a monitor probing /healthz with HEAD does not see a 405.
 */
static const is_http_route_t *route_find(const is_httpd_t *h, const char *method, const char *path,
                                         int *path_known) {
    *path_known = 0;
    for (size_t i = 0; i < h->n_routes; i++) {
        if (!path_matches(h->routes[i].path, path))
            continue;
        *path_known = 1;
        if (strcmp(h->routes[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(h->routes[i].method, "GET") == 0))
            return &h->routes[i];
    }
    return NULL;
}

/* "GET, POST": the distinct methods of the routes matching path. */
static void allow_header(const is_httpd_t *h, const char *path, char *buf, size_t size) {
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < h->n_routes; i++) {
        int dup = 0;
        if (!path_matches(h->routes[i].path, path))
            continue;
        for (size_t j = 0; j < i && !dup; j++)
            dup = path_matches(h->routes[j].path, path) &&
                  strcmp(h->routes[j].method, h->routes[i].method) == 0;
        if (dup)
            continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", h->routes[i].method);
        if (n < 0 || (size_t)n >= size - used) {
            buf[used] = '\0'; /* keep whole names only */
            return;
        }
        used += (size_t)n;
    }
}

/* ---- sending ----------------------------------------------------------- */

/* Add "Name: value" from resp->extra_header; malformed lines (no colon, an
 * empty name, CR/LF that would split the header) are dropped. */
static void add_extra_header(struct MHD_Response *r, const is_http_response_t *resp) {
    char line[sizeof resp->extra_header + 1];
    size_t n = strnlen(resp->extra_header, sizeof resp->extra_header);
    char *colon, *name_end, *value;

    if (n == 0)
        return;
    memcpy(line, resp->extra_header, n);
    line[n] = '\0';
    if (strpbrk(line, "\r\n"))
        return;
    colon = strchr(line, ':');
    if (!colon || colon == line)
        return;
    name_end = colon;
    while (name_end > line && (name_end[-1] == ' ' || name_end[-1] == '\t'))
        name_end--;
    if (name_end == line)
        return;
    *name_end = '\0';
    value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    (void)MHD_add_response_header(r, line, value);
}

/*
 * Queue resp on conn, taking ownership of resp->body whatever happens.
 * allow is an optional Allow header value.
 */
static enum MHD_Result send_response(struct MHD_Connection *conn, is_http_response_t *resp,
                                     const char *allow) {
    struct MHD_Response *r = NULL;
    enum MHD_Result ret = MHD_NO;
    int status = resp->status;

    if (status < 100 || status > 599)
        status = 500;
    if (resp->body) {
        size_t len = resp->body_len ? resp->body_len : strlen(resp->body);
        r = MHD_create_response_from_buffer(len, resp->body, MHD_RESPMEM_MUST_FREE);
        if (!r)
            free(resp->body);
        resp->body = NULL; /* owned by MHD (or freed) from here on */
    } else {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!r)
        goto done;
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                resp->content_type ? resp->content_type : "application/json") !=
        MHD_YES)
        goto done;
    if (allow && *allow)
        (void)MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    add_extra_header(r, resp);
    ret = MHD_queue_response(conn, (unsigned)status, r);
done:
    if (r)
        MHD_destroy_response(r); /* MHD keeps its own reference while sending */
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, int status, const char *allow,
                                  const char *fmt, ...) IS_PRINTF(4, 5);

static enum MHD_Result send_error(struct MHD_Connection *conn, int status, const char *allow,
                                  const char *fmt, ...) {
    is_http_response_t resp = {.status = status};
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    is_http_respond_error(&resp, status, "%s", msg);
    return send_response(conn, &resp, allow);
}

/* ---- the MHD callbacks ------------------------------------------------- */

/* Append to the body; sets too_large instead of growing past max_body. */
static int body_append(conn_state_t *cs, size_t max_body, const char *data, size_t n) {
    if (n > max_body - cs->len) { /* cs->len <= max_body always holds */
        cs->too_large = 1;
        return 0;
    }
    if (cs->len + n + 1 > cs->cap) {
        size_t cap = cs->cap ? cs->cap : 1024;
        char *nb;
        while (cap < cs->len + n + 1)
            cap *= 2;
        if (cap > max_body + 1)
            cap = max_body + 1;
        nb = realloc(cs->buf, cap);
        if (!nb)
            return -1;
        cs->buf = nb;
        cs->cap = cap;
    }
    memcpy(cs->buf + cs->len, data, n);
    cs->len += n;
    cs->buf[cs->len] = '\0';
    return 0;
}

/* Content-Length as a number; -1 when absent or not a plain decimal. */
static long long content_length(struct MHD_Connection *conn) {
    const char *v =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end;
    unsigned long long n;

    if (!v || *v < '0' || *v > '9')
        return -1;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno || *end || n > (unsigned long long)INT64_MAX)
        return -1;
    return (long long)n;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    is_httpd_t *h = cls;
    conn_state_t *cs = *con_cls;
    is_http_request_t req;
    is_http_response_t resp;
    enum MHD_Result ret;

    (void)version;
    if (!cs) {
        /* First call: headers only. Route now, so errors skip the body. */
        long long clen = content_length(conn);
        int path_known;

        cs = calloc(1, sizeof *cs);
        if (!cs)
            return MHD_NO; /* drops the connection */
        *con_cls = cs;
        atomic_fetch_add(&h->active, 1);
        cs->route = route_find(h, method, url, &path_known);
        if (!cs->route) {
            cs->answered = 1;
            if (!path_known)
                return send_error(conn, 404, NULL, "no such path '%s'", url);
            char allow[256];
            allow_header(h, url, allow, sizeof allow);
            return send_error(conn, 405, allow, "method %s not allowed on %s", method, url);
        }
        if (clen >= 0 && (unsigned long long)clen > h->max_body) {
            cs->answered = 1;
            return send_error(conn, 413, NULL, "request body larger than %zu bytes", h->max_body);
        }
        return MHD_YES;
    }
    if (cs->answered) {
        *upload_data_size = 0; /* a response is queued; drop whatever arrives */
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (cs->too_large) {
            /* Discarding the rest of an oversized body so the client can
             * read the 413; past twice the limit it is abuse: hang up. */
            size_t most = h->max_body > HTTPD_DISCARD_MIN ? h->max_body : HTTPD_DISCARD_MIN;
            cs->discarded += n;
            return cs->discarded > most ? MHD_NO : MHD_YES;
        }
        if (body_append(cs, h->max_body, upload_data, n) < 0)
            return MHD_NO;
        if (cs->too_large) {
            /* Only a chunked body gets here (a too large Content-Length is
             * refused on the first call). MHD 0.9.75 refuses a response
             * queued mid-body, so the 413 goes out at the end. */
            free(cs->buf);
            cs->buf = NULL;
            cs->len = cs->cap = 0;
        }
        return MHD_YES;
    }
    /* Final call: the whole body is in. */
    cs->answered = 1;
    if (cs->too_large)
        return send_error(conn, 413, NULL, "request body larger than %zu bytes", h->max_body);
    req = (is_http_request_t){
        .method = method,
        .path = url,
        .body = cs->buf ? cs->buf : "",
        .body_len = cs->len,
        .conn = conn,
    };
    resp = (is_http_response_t){.status = 200};
    cs->route->fn(h->ctx, &req, &resp);
    ret = send_response(conn, &resp, NULL);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    conn_state_t *cs = *con_cls;
    is_httpd_t *h = cls;

    (void)conn;
    (void)toe;
    if (cs) {
        atomic_fetch_sub(&h->active, 1);
        free(cs->buf);
        free(cs);
        *con_cls = NULL;
    }
}

/* ---- start / stop ------------------------------------------------------ */

/* Digits only, 0..65535. */
static int parse_port(const char *s, uint16_t *out) {
    unsigned long v = 0;

    if (!*s || strlen(s) > 5)
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

/*
 * Split "host:port", ":port" or "[v6]:port" into host (empty for all
 * interfaces) and port.
 */
static int split_listen(const char *listen, char *host, size_t host_size, uint16_t *port) {
    const char *colon, *hs, *he;

    if (listen[0] == '[') {
        he = strchr(listen, ']');
        if (!he || he[1] != ':')
            return -1;
        hs = listen + 1;
        colon = he + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || memchr(listen, ':', (size_t)(colon - listen)))
            return -1; /* no port, or an unbracketed IPv6 address */
        hs = listen;
        he = colon;
    }
    if ((size_t)(he - hs) >= host_size)
        return -1;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    return parse_port(colon + 1, port);
}

is_err_t is_httpd_check_listen(const char *listen, char *errstr, size_t errstr_size) {
    char host[256];
    uint16_t port;
    if (!listen || split_listen(listen, host, sizeof host, &port) != 0) {
        is_errf(errstr, errstr_size,
                "bad listen address '%s': expected \"host:port\" or \":port\" (port 0-65535)",
                listen ? listen : "");
        return IS_ERR_CONFIG;
    }
    return IS_OK;
}

static is_err_t bind_listen(const char *addr, int *fd_out, uint16_t *port_out, char *errstr,
                            size_t errstr_size) {
    struct addrinfo hints = {0}, *res = NULL;
    char host[256], port_s[8];
    uint16_t port = 0;
    int fd = -1, gai, err = 0, one = 1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    is_err_t rc = IS_OK;

    if (!addr || split_listen(addr, host, sizeof host, &port) != 0) {
        is_errf(errstr, errstr_size,
                "bad listen address '%s': expected \"host:port\" or \":port\" (port 0-65535)",
                addr ? addr : "(null)");
        return IS_ERR_CONFIG;
    }
    snprintf(port_s, sizeof port_s, "%u", (unsigned)port);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    hints.ai_family = host[0] ? AF_UNSPEC : AF_INET; /* ":port" = 0.0.0.0 */
    gai = getaddrinfo(host[0] ? host : NULL, port_s, &hints, &res);
    if (gai != 0) {
        is_errf(errstr, errstr_size, "bad listen address '%s': %s", addr, gai_strerror(gai));
        return IS_ERR_CONFIG;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, HTTPD_BACKLOG) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        is_errf(errstr, errstr_size, "cannot listen on '%s': %s", addr, strerror(err));
        rc = IS_ERR_IO;
        goto done;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        is_errf(errstr, errstr_size, "cannot listen on '%s': getsockname: %s", addr,
                strerror(errno));
        rc = IS_ERR_IO;
        goto done;
    }
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    fd = -1;
done:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return rc;
}

static void routes_free(is_http_route_t *routes, size_t n) {
    for (size_t i = 0; routes && i < n; i++) {
        free((char *)routes[i].method);
        free((char *)routes[i].path);
    }
    free(routes);
}

is_err_t is_httpd_start(const char *listen, const is_http_route_t *routes, size_t n_routes,
                        void *ctx, size_t max_body, unsigned threads, is_httpd_t **out,
                        char *errstr, size_t errstr_size) {
    /* ITC: is_httpd_stop quiesces the daemon (stops accepting) before it stops. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
    is_httpd_t *h = NULL;
    int fd = -1;
    is_err_t rc = IS_OK;

    if (!out)
        return IS_ERR_INVALID;
    *out = NULL;
    if (n_routes && !routes) {
        is_errf(errstr, errstr_size, "httpd: routes is NULL");
        return IS_ERR_INVALID;
    }
    for (size_t i = 0; i < n_routes; i++) {
        if (!routes[i].method || !routes[i].path || !routes[i].fn) {
            is_errf(errstr, errstr_size, "httpd: route %zu is incomplete", i);
            return IS_ERR_INVALID;
        }
    }
    h = calloc(1, sizeof *h);
    if (!h || (n_routes && !(h->routes = calloc(n_routes, sizeof *h->routes)))) {
        rc = IS_ERR_NOMEM;
        is_errf(errstr, errstr_size, "httpd: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_routes; i++) {
        h->routes[i].fn = routes[i].fn;
        h->routes[i].method = strdup(routes[i].method);
        h->routes[i].path = strdup(routes[i].path);
        h->n_routes = i + 1;
        if (!h->routes[i].method || !h->routes[i].path) {
            rc = IS_ERR_NOMEM;
            is_errf(errstr, errstr_size, "httpd: out of memory");
            goto done;
        }
    }
    h->ctx = ctx;
    h->max_body = max_body < SIZE_MAX / 2 ? max_body : SIZE_MAX / 2; /* no overflow in +1 */
    rc = bind_listen(listen, &fd, &h->port, errstr, errstr_size);
    if (rc != IS_OK)
        goto done;

    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_AUTO;
    /* clang-format off */
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                                 MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                                 MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(threads ? threads : 1),
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, (void *)h,
                                 MHD_OPTION_CONNECTION_TIMEOUT, HTTPD_IDLE_TIMEOUT,
                                 MHD_OPTION_END);
    /* clang-format on */
    if (!h->daemon) {
        is_errf(errstr, errstr_size, "cannot start HTTP server on '%s'", listen);
        rc = IS_ERR_IO;
        goto done;
    }
    fd = -1; /* the daemon closes it */
    *out = h;
    h = NULL;
done:
    if (fd >= 0)
        close(fd);
    if (h) {
        routes_free(h->routes, h->n_routes);
        free(h);
    }
    return rc;
}

uint16_t is_httpd_port(const is_httpd_t *h) {
    return h ? h->port : 0;
}

void is_httpd_stop(is_httpd_t *h) {
    if (!h)
        return;
    /* Stop accepting, then let requests in flight finish and their answers
     * go out (a client whose batch was committed gets its 202), for at most
     * HTTPD_DRAIN_MS. Idle keep-alive connections are not waited for. */
    /* The listen socket is ours once quiesced, but a worker may still poll
     * it: closed only after MHD_stop_daemon (microhttpd.h). */
    MHD_socket ls = MHD_quiesce_daemon(h->daemon);
    int n = atomic_load(&h->active);
    if (n > 0) {
        char nbuf[16];
        snprintf(nbuf, sizeof(nbuf), "%d", n);
        is_log(IS_LOG_INFO, "HTTP server stopping: finishing the requests in flight", "requests",
               nbuf, NULL);
        for (int waited = 0; atomic_load(&h->active) > 0 && waited < HTTPD_DRAIN_MS; waited += 10) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        n = atomic_load(&h->active);
        if (n > 0) {
            snprintf(nbuf, sizeof(nbuf), "%d", n);
            is_log(IS_LOG_WARN, "HTTP server stopped with requests unfinished", "requests", nbuf,
                   NULL);
        }
    }
    MHD_stop_daemon(h->daemon); /* joins the workers: no handler runs after this */
    if (ls != MHD_INVALID_SOCKET)
        close(ls);
    routes_free(h->routes, h->n_routes);
    free(h);
}
