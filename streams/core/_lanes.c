/* The engine's compiled core: decode, check, deduplicate and apply a run of records of
 * one partition to the engine's state, which this module's types own (dedup ids, catalog
 * versions, SKU hours, cells, cell hashes) and its hot-path caches (dicts of the named
 * HotEntry and PageViewEntry records, which hold handles into those types). Three
 * lanes, one per demand topic, methods of a Core:
 *
 *   pageview_run   shop.pageviews: everything a page view does (SKU hour, the cells of
 *                  every window size, visitor hashes), including building new cells;
 *   logistics_run  shop.logistics: shipped and delivered (97% of them) completely, since
 *                  they change no counter; the other types are handed back to be applied;
 *   order_run      shop.orders: orders of up to MAX_LINES lines completely (SKU hours,
 *                  cells, GMV as price_e4, the order counted once per cell).
 *
 * They share one run loop (run_lane) and differ in a lane_ops table: scanner, event time
 * and id, and what an admitted event does. A Core (one per engine) owns what the lanes
 * keep between calls, its caches, and the engine's settings (window sizes, calendar
 * grains, the typed Limits), fixed when it is made; each call names the partition's
 * containers in a typed LaneState. A partition's dedup state is a type of this module
 * (IdSet: the ids' hashes in C arrays, streams.core.dedup.Deduplicator's methods), which
 * the lanes add ids to without a Python object per id; so is the catalog's store of
 * versions (Versions: streams.core.catalog.CatalogVersions's methods), which they look
 * SKUs up in, a partition's per-SKU hourly counters (SkuHours:
 * streams.core.inventory.SkuHours's methods) and its cells' measures (Cells:
 * streams.core.demand.Cells's), which they count into by handle, and its cells' visitor
 * hashes and shop tags since the last cut (CellHashes, twice: streams.core.demand.
 * CellHashes's methods), which they add to by handle. The LaneState, Limits and Core
 * types take named fields, checked once at construction. The module itself keeps no
 * mutable state (multi-phase initialisation).
 *
 * streams/core/engine.py is the reference. This does exactly what its Python path does
 * (same state, same values) for the messages it is sure about, and stops at the first
 * record it is not sure about *before changing anything for it*: the Python engine then
 * handles that one record and calls back in for the rest.
 *
 * It is sure about a message (scan_object and the topic's rules) when it is one flat JSON
 * object of the topic's fields only, each once, strings without escapes, control
 * characters or DEL, valid UTF-8 of the contract's lengths (in code points), integers
 * plain and in range, a known event_type with the fields it requires, and ts an integer
 * epoch-ms in range or an RFC 3339 string that schemas.fastpath.fast_event_time converts
 * exactly. Anything else (unknown fields, a backslash, a float, null, nesting, ...) is
 * "not sure", never "invalid": rejections always come from the contract decoder in
 * Python, with their reason codes.
 *
 * Per accepted event, in the reference's order (DemandEngine._process_run):
 *   future_ts / stale_ts against the record's Kafka timestamp -> stop (Python rejects);
 *   behind the watermark by more than the correction horizon  -> stop (Python decides
 *     duplicate or late event);
 *   event id seen (BLAKE2b-64, the ids' persisted hash; IdSet) -> duplicate;
 *   watermark (max ts) and the "corrected" count;
 *   page views: the lane entry of (sku, region, ts // grain) from hot_pv, built here
 *     (DemandEngine._pv_entry, PartitionState.hot_entry) when absent or of an older
 *     catalog generation; a catalog version starting inside the grain -> stop with APPLY
 *     (Python applies it); then SKU hour page views, the page views of the cell of every
 *     window size, the visitor hash into the base sizes' cells (CellHashes) and the
 *     shop's view tag into their shop tags (streams.core.kanon: who contributes to a cell).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ BLAKE2b-64 */
/* The BLAKE2 authors' reference implementation, vendored unmodified (vendor/blake2,
 * CC0), in this translation unit so that the compiler can inline it. Unkeyed, 8-byte
 * digest: the value hashlib.blake2b(data, digest_size=8) gives, read little-endian
 * (streams.core.dedup.id_hash). */
#include "vendor/blake2/blake2b-ref.c"

static inline uint64_t load64_le(const uint8_t *p) {
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) |
           ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
}

static uint64_t blake2b64(const uint8_t *p, size_t n) {
    uint8_t out[8];
    /* fails only for a NULL input with a length, or a bad digest or key size */
    (void)blake2b(out, sizeof out, n ? p : NULL, n, NULL, 0);
    return load64_le(out);
}

/* ------------------------------------------------------------------ RFC 3339 */
/* schemas.fastpath.fast_event_time, in C: the grammar of schemas.types._RFC3339, a real
 * date, hour <= 23, minute and second <= 59, offset hours <= 23 and minutes <= 59; only
 * for 0 < epoch seconds < 2**33 (where the reference's float truncation is exact).
 * Fractions are truncated to milliseconds. Returns 1 and sets *out, or 0: not sure. */

static inline int dig(uint8_t c) { return c >= '0' && c <= '9'; }
static inline int two(const uint8_t *p) { return (p[0] - '0') * 10 + (p[1] - '0'); }

static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m) {
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) return 29;
    return dim[m - 1];
}

static int parse_rfc3339(const uint8_t *s, Py_ssize_t n, int64_t *out) {
    if (n < 20) return 0;
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    for (int i = 0; i < 19; i++) {
        const uint8_t c = s[i];
        if (shape[i] == 'd') {
            if (!dig(c)) return 0;
        } else if (shape[i] == 'T') {
            if (c != 'T' && c != 't' && c != ' ') return 0;
        } else if (c != (uint8_t)shape[i]) {
            return 0;
        }
    }
    const int y = two(s) * 100 + two(s + 2), mo = two(s + 5), d = two(s + 8);
    const int hh = two(s + 11), mi = two(s + 14), ss = two(s + 17);
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return 0;
    if (hh > 23 || mi > 59 || ss > 59) return 0;
    Py_ssize_t p = 19;
    int64_t frac_ms = 0;
    if (s[p] == '.') {
        const Py_ssize_t start = ++p;
        while (p < n && dig(s[p])) p++;
        const Py_ssize_t nd = p - start;
        if (nd < 1 || nd > 9) return 0;
        for (Py_ssize_t k = 0; k < 3; k++)
            frac_ms = frac_ms * 10 + (k < nd ? s[start + k] - '0' : 0);
    }
    if (p >= n) return 0;
    int64_t off;
    if (s[p] == 'Z' || s[p] == 'z') {
        off = 0;
        p += 1;
    } else if (s[p] == '+' || s[p] == '-') {
        if (p + 6 > n || !dig(s[p + 1]) || !dig(s[p + 2]) || s[p + 3] != ':' ||
            !dig(s[p + 4]) || !dig(s[p + 5]))
            return 0;
        const int oh = two(s + p + 1), om = two(s + p + 4);
        if (oh > 23 || om > 59) return 0;
        off = (s[p] == '+' ? 1 : -1) * (int64_t)(oh * 3600 + om * 60);
        p += 6;
    } else {
        return 0;
    }
    if (p != n) return 0;
    const int64_t total = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - off;
    if (!(0 < total && total < ((int64_t)1 << 33))) return 0;
    *out = total * 1000 + frac_ms;
    return 1;
}

/* ------------------------------------------------------------------ the decoders */

#define MAX_EPOCH_MS 253402300799999LL /* schemas.types.MAX_EPOCH_MS */

typedef struct {
    const uint8_t *p;
    Py_ssize_t n;
} span;

#define IS_WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')

/* A JSON string at *pp (its opening quote): no escape, no control character, no DEL,
 * strictly valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
 * Sets the content span and its length in code points; 0 when not sure. */
static int scan_string(const uint8_t **pp, const uint8_t *end, span *sp, Py_ssize_t *cps) {
    const uint8_t *p = *pp + 1;
    const uint8_t *const start = p;
    Py_ssize_t cp = 0;
    for (;;) {
        if (p >= end) return 0;
        const uint8_t c = *p;
        if (c < 0x80) {
            if (c == '"') break;
            if (c < 0x20 || c == '\\' || c == 0x7f) return 0;
            p++;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (end - p < 2 || (p[1] & 0xC0) != 0x80) return 0;
            p += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
            if (c == 0xED && p[1] > 0x9F) return 0; /* surrogate */
            p += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
                (p[3] & 0xC0) != 0x80)
                return 0;
            if (c == 0xF0 && p[1] < 0x90) return 0; /* overlong */
            if (c == 0xF4 && p[1] > 0x8F) return 0; /* above U+10FFFF */
            p += 4;
        } else {
            return 0;
        }
        cp++;
    }
    sp->p = start;
    sp->n = p - start;
    *cps = cp;
    *pp = p + 1;
    return 1;
}

/* A value of an object: a string (without escapes), a non-negative JSON integer of at
 * most 15 digits, a non-negative decimal fraction of at most 24 characters, or (for a
 * field whose handler takes arrays) an array; everything else is "not sure". */
enum { J_STRING, J_INT, J_FRACTION, J_ARRAY };

typedef struct {
    int kind;
    span s;                /* a string's content */
    Py_ssize_t cps;        /* its length in code points */
    int64_t v;             /* an integer */
    double d;              /* a fraction (J_FRACTION) or an integer (J_INT), as float() reads it */
    const uint8_t **at;    /* J_ARRAY: the position of "[", to be moved past "]" */
    const uint8_t *end;
} jvalue;

typedef int (*field_fn)(const span *key);                    /* field index, -1: unknown */
typedef int (*value_fn)(void *ev, int field, const jvalue *v); /* 0: not sure */

static inline int span_is(const span *k, const char *name, size_t n) {
    return k->n == (Py_ssize_t)n && memcmp(k->p, name, n) == 0;
}
#define SPAN_IS(k, lit) span_is((k), lit, sizeof(lit) - 1)

/* A number at *pp: "0" or digits without a leading zero, optionally "." and digits; no
 * sign, no exponent; then a delimiter. 0: not sure. */
static int scan_number(const uint8_t **pp, const uint8_t *end, jvalue *val) {
    const uint8_t *p = *pp, *const start = p;
    int64_t v = 0;
    while (p < end && dig(*p)) {
        if (p - start >= 15) return 0;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (*start == '0' && p - start > 1) return 0;
    val->kind = J_INT;
    val->v = v;
    val->d = (double)v; /* exact: below 2**53 */
    if (p < end && *p == '.') {
        const uint8_t *const frac = ++p;
        while (p < end && dig(*p)) p++;
        if (p == frac || p - start > 24) return 0;
        char text[32];
        memcpy(text, start, (size_t)(p - start));
        text[p - start] = '\0';
        char *stop = NULL;
        /* Python's float(): correctly rounded, independent of the locale */
        const double d = PyOS_string_to_double(text, &stop, NULL);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (stop != text + (p - start)) return 0;
        val->kind = J_FRACTION;
        val->d = d;
    }
    if (p >= end || !(IS_WS(*p) || *p == ',' || *p == '}' || *p == ']')) return 0;
    *pp = p;
    return 1;
}

/* One JSON object at *pp whose fields are all known (field_of), each at most once, each
 * value accepted by on_value; *pp is moved past its "}". Sets *seen (a bit per field);
 * 0: not sure. */
static int scan_object_at(const uint8_t **pp, const uint8_t *end, field_fn field_of,
                          value_fn on_value, void *ev, unsigned *seen) {
    const uint8_t *p = *pp;
    *seen = 0;
    while (p < end && IS_WS(*p)) p++;
    if (p >= end || *p != '{') return 0;
    p++;
    for (;;) {
        while (p < end && IS_WS(*p)) p++;
        if (p >= end || *p != '"') return 0;
        span key;
        jvalue val;
        Py_ssize_t cps;
        if (!scan_string(&p, end, &key, &cps)) return 0;
        const int f = field_of(&key);
        if (f < 0 || (*seen & (1u << f))) return 0; /* another field, or a repeated one */
        *seen |= 1u << f;
        while (p < end && IS_WS(*p)) p++;
        if (p >= end || *p != ':') return 0;
        p++;
        while (p < end && IS_WS(*p)) p++;
        if (p >= end) return 0;
        if (*p == '"') {
            val.kind = J_STRING;
            if (!scan_string(&p, end, &val.s, &val.cps)) return 0;
        } else if (dig(*p)) {
            if (!scan_number(&p, end, &val)) return 0;
        } else if (*p == '[') {
            val.kind = J_ARRAY;
            val.at = &p;
            val.end = end;
        } else {
            return 0; /* a negative number, a literal, an object */
        }
        if (!on_value(ev, f, &val)) return 0; /* an array's handler moves p past it */
        while (p < end && IS_WS(*p)) p++;
        if (p >= end) return 0;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != '}') return 0;
        p++;
        break;
    }
    *pp = p;
    return 1;
}

/* The whole message is one such object (whitespace around it allowed). */
static int scan_object(const uint8_t *buf, Py_ssize_t n, field_fn field_of, value_fn on_value,
                       void *ev, unsigned *seen) {
    const uint8_t *p = buf, *const end = buf + n;
    if (!scan_object_at(&p, end, field_of, on_value, ev, seen)) return 0;
    while (p < end && IS_WS(*p)) p++;
    return p == end;
}

/* An Id (1..128 code points), Attr (1..64) or Text (0..512): schemas.types */
static inline int is_id(const jvalue *v) {
    return v->kind == J_STRING && v->cps >= 1 && v->cps <= 128;
}
static inline int is_attr(const jvalue *v) {
    return v->kind == J_STRING && v->cps >= 1 && v->cps <= 64;
}
static inline int is_text(const jvalue *v) { return v->kind == J_STRING && v->cps <= 512; }

/* ts: an integer epoch-ms in range, or an RFC 3339 string */
static int event_ts(const jvalue *v, int64_t *ts) {
    if (v->kind == J_INT) {
        if (v->v > MAX_EPOCH_MS) return 0;
        *ts = v->v;
        return 1;
    }
    return v->kind == J_STRING && parse_rfc3339(v->s.p, v->s.n, ts);
}

/* shop.pageviews: schemas.events.PageViewEvent */
enum { P_EVENT_ID, P_TS, P_SHOP_ID, P_EVENT_TYPE, P_SKU, P_VISITOR_ID, P_REGION, P_FIELDS };

typedef struct {
    span event_id, sku, visitor_id, region, shop_id;
    int64_t ts;
} pageview;

static int pageview_field(const span *k) {
    switch (k->n) {
        case 2: return SPAN_IS(k, "ts") ? P_TS : -1;
        case 3: return SPAN_IS(k, "sku") ? P_SKU : -1;
        case 6: return SPAN_IS(k, "region") ? P_REGION : -1;
        case 7: return SPAN_IS(k, "shop_id") ? P_SHOP_ID : -1;
        case 8: return SPAN_IS(k, "event_id") ? P_EVENT_ID : -1;
        case 10:
            if (SPAN_IS(k, "event_type")) return P_EVENT_TYPE;
            return SPAN_IS(k, "visitor_id") ? P_VISITOR_ID : -1;
    }
    return -1;
}

static int pageview_value(void *out, int f, const jvalue *v) {
    pageview *ev = out;
    switch (f) {
        case P_TS: return event_ts(v, &ev->ts);
        case P_EVENT_TYPE: return v->kind == J_STRING && SPAN_IS(&v->s, "page_view");
        case P_REGION: ev->region = v->s; return is_attr(v);
        case P_EVENT_ID: ev->event_id = v->s; return is_id(v);
        case P_SKU: ev->sku = v->s; return is_id(v);
        case P_VISITOR_ID: ev->visitor_id = v->s; return is_id(v);
        default: ev->shop_id = v->s; return is_id(v); /* shop_id */
    }
}

/* 1: a page view the contract surely accepts, fields in *ev; 0: not sure. */
static int scan_pageview(const uint8_t *buf, Py_ssize_t n, pageview *ev) {
    unsigned seen;
    return scan_object(buf, n, pageview_field, pageview_value, ev, &seen) &&
           seen == (1u << P_FIELDS) - 1;
}

/* shop.logistics: schemas.events.LogisticsMovement | StockLevel (by event_type) */
enum {
    G_EVENT_ID, G_TS, G_SHOP_ID, G_EVENT_TYPE, G_SKU, G_ORDER_ID, G_REGION, G_REASON,
    G_FACTORY_ID, G_QTY, G_ON_HAND, G_FIELDS
};
/* what the engine does with it: nothing more than count it, or apply it (Python) */
enum { KIND_SHIPPED, KIND_DELIVERED, KIND_RETURNED, KIND_RESTOCK_SHIPPED,
       KIND_RESTOCK_RECEIVED, KIND_STOCK_LEVEL };

typedef struct {
    span event_id;
    int64_t ts;
    int kind;
} logistics;

static int logistics_field(const span *k) {
    switch (k->n) {
        case 2: return SPAN_IS(k, "ts") ? G_TS : -1;
        case 3:
            if (SPAN_IS(k, "sku")) return G_SKU;
            return SPAN_IS(k, "qty") ? G_QTY : -1;
        case 6:
            if (SPAN_IS(k, "region")) return G_REGION;
            return SPAN_IS(k, "reason") ? G_REASON : -1;
        case 7:
            if (SPAN_IS(k, "shop_id")) return G_SHOP_ID;
            return SPAN_IS(k, "on_hand") ? G_ON_HAND : -1;
        case 8:
            if (SPAN_IS(k, "event_id")) return G_EVENT_ID;
            return SPAN_IS(k, "order_id") ? G_ORDER_ID : -1;
        case 10:
            if (SPAN_IS(k, "event_type")) return G_EVENT_TYPE;
            return SPAN_IS(k, "factory_id") ? G_FACTORY_ID : -1;
    }
    return -1;
}

static int logistics_kind(const span *t) {
    if (SPAN_IS(t, "shipped")) return KIND_SHIPPED;
    if (SPAN_IS(t, "delivered")) return KIND_DELIVERED;
    if (SPAN_IS(t, "returned")) return KIND_RETURNED;
    if (SPAN_IS(t, "restock_shipped")) return KIND_RESTOCK_SHIPPED;
    if (SPAN_IS(t, "restock_received")) return KIND_RESTOCK_RECEIVED;
    if (SPAN_IS(t, "stock_level")) return KIND_STOCK_LEVEL;
    return -1;
}

static int logistics_value(void *out, int f, const jvalue *v) {
    logistics *ev = out;
    switch (f) {
        case G_TS: return event_ts(v, &ev->ts);
        case G_EVENT_TYPE: return v->kind == J_STRING && (ev->kind = logistics_kind(&v->s)) >= 0;
        case G_EVENT_ID: ev->event_id = v->s; return is_id(v);
        case G_REGION: return is_attr(v);
        case G_REASON: return is_text(v);
        case G_QTY: return v->kind == J_INT && v->v >= 1 && v->v <= 1000000;
        case G_ON_HAND: return v->kind == J_INT && v->v <= 1000000000;
        default: return is_id(v); /* shop_id, sku, order_id, factory_id */
    }
}

/* 1: a logistics event the contract surely accepts; 0: not sure. A movement needs qty
 * (an on_hand beside it would be an ignored extra: left to Python), a stock level
 * on_hand (likewise a qty). */
static int scan_logistics(const uint8_t *buf, Py_ssize_t n, logistics *ev) {
    unsigned seen;
    ev->kind = -1;
    if (!scan_object(buf, n, logistics_field, logistics_value, ev, &seen)) return 0;
    const unsigned base = (1u << G_EVENT_ID) | (1u << G_TS) | (1u << G_SHOP_ID) |
                          (1u << G_EVENT_TYPE) | (1u << G_SKU);
    if ((seen & base) != base) return 0;
    const unsigned qty = 1u << G_QTY, on_hand = 1u << G_ON_HAND;
    if (ev->kind == KIND_STOCK_LEVEL) return (seen & (qty | on_hand)) == on_hand;
    return (seen & (qty | on_hand)) == qty;
}

/* shop.orders: schemas.events.OrderEvent, at most MAX_LINES lines (more: Python's) */
enum { O_EVENT_ID, O_TS, O_SHOP_ID, O_EVENT_TYPE, O_ORDER_ID, O_REGION, O_BUYER_ID, O_LINES,
       O_FIELDS };
enum { L_SKU, L_QTY, L_UNIT_PRICE, L_FIELDS };
#define MAX_LINES 64

typedef struct {
    span sku;
    int64_t qty, gmv_e4; /* gmv_e4 = qty * round(unit_price * 10000): demand.price_e4 */
    double price;
} order_line;

typedef struct {
    span event_id, region, shop_id;
    int64_t ts;
    int placed; /* order_placed: 1, order_cancelled: 0 */
    int nlines;
    order_line lines[MAX_LINES];
} order;

static int order_field(const span *k) {
    switch (k->n) {
        case 2: return SPAN_IS(k, "ts") ? O_TS : -1;
        case 5: return SPAN_IS(k, "lines") ? O_LINES : -1;
        case 6: return SPAN_IS(k, "region") ? O_REGION : -1;
        case 7: return SPAN_IS(k, "shop_id") ? O_SHOP_ID : -1;
        case 8:
            if (SPAN_IS(k, "event_id")) return O_EVENT_ID;
            if (SPAN_IS(k, "order_id")) return O_ORDER_ID;
            return SPAN_IS(k, "buyer_id") ? O_BUYER_ID : -1;
        case 10: return SPAN_IS(k, "event_type") ? O_EVENT_TYPE : -1;
    }
    return -1;
}

static int line_field(const span *k) {
    if (SPAN_IS(k, "sku")) return L_SKU;
    if (SPAN_IS(k, "qty")) return L_QTY;
    return SPAN_IS(k, "unit_price") ? L_UNIT_PRICE : -1;
}

static int line_value(void *out, int f, const jvalue *v) {
    order_line *ln = out;
    switch (f) {
        case L_SKU: ln->sku = v->s; return is_id(v);
        case L_QTY: ln->qty = v->v; return v->kind == J_INT && v->v >= 1 && v->v <= 1000000;
        default: /* unit_price: schemas.types.Price, a float (a JSON integer is one too) */
            ln->price = v->d;
            return (v->kind == J_INT || v->kind == J_FRACTION) && v->d >= 0 && v->d <= 1e9;
    }
}

/* "lines": an array of 1..MAX_LINES line objects; moves the position past "]". */
static int order_lines(order *ev, const jvalue *v) {
    const uint8_t *p = *v->at + 1, *const end = v->end;
    ev->nlines = 0;
    for (;;) {
        if (ev->nlines >= MAX_LINES) return 0;
        order_line *ln = &ev->lines[ev->nlines];
        unsigned seen;
        if (!scan_object_at(&p, end, line_field, line_value, ln, &seen) ||
            seen != (1u << L_FIELDS) - 1)
            return 0;
        /* round(qty * price * 10000) as demand.price_e4 (round half to even, which is
         * nearbyint's default mode); an integer product that would not fit: Python's */
        const double e4 = nearbyint(ln->price * 10000.0);
        if (!(e4 >= 0 && e4 <= 1e13) ||
            __builtin_mul_overflow(ln->qty, (int64_t)e4, &ln->gmv_e4))
            return 0;
        ev->nlines++;
        while (p < end && IS_WS(*p)) p++;
        if (p >= end) return 0;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != ']') return 0;
        *v->at = p + 1;
        return 1;
    }
}

static int order_value(void *out, int f, const jvalue *v) {
    order *ev = out;
    switch (f) {
        case O_TS: return event_ts(v, &ev->ts);
        case O_EVENT_TYPE:
            if (v->kind != J_STRING) return 0;
            if (SPAN_IS(&v->s, "order_placed")) ev->placed = 1;
            else if (SPAN_IS(&v->s, "order_cancelled")) ev->placed = 0;
            else return 0;
            return 1;
        case O_REGION: ev->region = v->s; return is_attr(v);
        case O_EVENT_ID: ev->event_id = v->s; return is_id(v);
        case O_LINES: return v->kind == J_ARRAY && order_lines(ev, v);
        case O_SHOP_ID: ev->shop_id = v->s; return is_id(v);
        default: return is_id(v); /* order_id, buyer_id */
    }
}

static int scan_order(const uint8_t *buf, Py_ssize_t n, order *ev) {
    unsigned seen;
    return scan_object(buf, n, order_field, order_value, ev, &seen) &&
           seen == (1u << O_FIELDS) - 1;
}

/* ------------------------------------------------------------------ the run */

static PyObject *S_value, *S_timestamp, *S_category, *S_color, *S_size, *S_price_band;

enum { DONE = 0, SLOW = 1, APPLY = 2 };

/* The slots of a cell's measure vector (streams.core.demand) and of a SKU hour's vector
 * (streams.core.inventory), by the Python names: the module exports them and a unit test
 * checks each against its Python constant. */
#define CELL_SLOTS(X) X(ORDERS) X(UNITS) X(GMV_E4) X(CANCELLED_UNITS) X(RETURNED_UNITS) X(PAGEVIEWS)
#define SKU_SLOTS(X)                                                                       \
    X(SKU_ORDERS) X(SKU_UNITS) X(SKU_CANCELLED) X(SKU_RETURNED) X(SKU_PAGEVIEWS)            \
    X(SKU_SHIPPED) X(SKU_RECEIVED) X(SKU_COUNT_TS) X(SKU_COUNT_ON_HAND)
#define X(name) name,
enum { CELL_SLOTS(X) N_CELL_SLOTS };
enum { SKU_SLOTS(X) N_SKU_SLOTS };
#undef X

static int as_i64(PyObject *o, const char *what, int64_t *out) {
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "page-view lane: %s must be an int", what);
        return -1;
    }
    *out = v;
    return 0;
}

/* The record's Kafka timestamp: 1 and *ref; 0 when absent or negative (the reference then
 * reads the wall clock: left to Python); -1 on error. */
static int record_time(PyObject *rec, int64_t *ref) {
    PyObject *t = PyObject_GetAttr(rec, S_timestamp);
    if (t == NULL) return -1;
    int ok = 0;
    if (PyLong_CheckExact(t)) {
        long long v = PyLong_AsLongLong(t);
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
        } else if (v >= 0) {
            *ref = v;
            ok = 1;
        }
    }
    Py_DECREF(t);
    return ok;
}

/* Visitor ids repeat (a visitor views many products): their hashes are cached, direct
 * mapped by a cheap hash of the bytes; a slot holds the id's bytes, so a hit is exact. */
#define VCACHE_SLOTS 8192
#define VCACHE_ID 40
typedef struct {
    uint8_t len; /* 0: empty */
    uint8_t id[VCACHE_ID];
    uint64_t hash;
} vcache_slot;

/* SKUs and regions repeat: their str objects are cached the same way (direct mapped by
 * the bytes, exact on a hit), with their hash computed once, so a dict lookup keyed by
 * them neither decodes UTF-8 nor hashes the text again. Bounded: STR_SLOTS strs. */
#define STR_SLOTS 4096
#define STR_MAX 48
typedef struct {
    uint8_t len;
    uint8_t bytes[STR_MAX];
    PyObject *str;
} str_slot;

/* The lane entries met during one pageview_run call, by (SKU str, region str, grain):
 * most views of a run repeat a (sku, region) of the same grain, and a hit saves building
 * the key, its hash and the hot_pv lookup. Only entries of the call's catalog generation
 * are kept; hot_pv cannot lose them during the call; cleared when the call ends. */
#define ENTRY_SLOTS 1024
typedef struct {
    PyObject *sku, *region, *entry; /* strong references */
    int64_t grain;
} entry_slot;

/* The caches of one Core (allocated with it, freed with it): nothing mutable is kept at
 * module level, so two engines (or two interpreters) never share a slot. */
typedef struct {
    vcache_slot vcache[VCACHE_SLOTS];
    str_slot strs[STR_SLOTS];
    entry_slot entries[ENTRY_SLOTS];
} caches_t;

static uint64_t visitor_hash(caches_t *C, const uint8_t *p, Py_ssize_t n) {
    if (n <= 0 || n > VCACHE_ID) return blake2b64(p, (size_t)n);
    uint32_t f = 2166136261u; /* FNV-1a */
    for (Py_ssize_t k = 0; k < n; k++) f = (f ^ p[k]) * 16777619u;
    vcache_slot *slot = &C->vcache[f & (VCACHE_SLOTS - 1)];
    if (slot->len == (uint8_t)n && memcmp(slot->id, p, (size_t)n) == 0) return slot->hash;
    slot->hash = blake2b64(p, (size_t)n);
    slot->len = (uint8_t)n;
    memcpy(slot->id, p, (size_t)n);
    return slot->hash;
}

/* A str of the UTF-8 bytes (already validated): a new reference, or NULL. */
static PyObject *cached_str(caches_t *C, const uint8_t *p, Py_ssize_t n) {
    if (n <= 0 || n > STR_MAX) return PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    uint32_t f = 2166136261u; /* FNV-1a */
    for (Py_ssize_t k = 0; k < n; k++) f = (f ^ p[k]) * 16777619u;
    str_slot *slot = &C->strs[f & (STR_SLOTS - 1)];
    if (slot->str != NULL && slot->len == (uint8_t)n && memcmp(slot->bytes, p, (size_t)n) == 0)
        return Py_NewRef(slot->str);
    PyObject *s = PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    if (s == NULL) return NULL;
    if (PyObject_Hash(s) == -1) {
        Py_DECREF(s);
        return NULL;
    }
    Py_XSETREF(slot->str, Py_NewRef(s));
    slot->len = (uint8_t)n;
    memcpy(slot->bytes, p, (size_t)n);
    return s;
}

static entry_slot *entry_cache_slot(caches_t *C, PyObject *sku, PyObject *region,
                                    int64_t grain) {
    const uint64_t h = ((uint64_t)(uintptr_t)sku >> 4) * 0x9E3779B97F4A7C15ULL ^
                       ((uint64_t)(uintptr_t)region >> 4) * 0xC2B2AE3D27D4EB4FULL ^
                       (uint64_t)grain * 0x165667B19E3779F9ULL;
    return &C->entries[(h >> 40) & (ENTRY_SLOTS - 1)];
}

static void entry_cache_put(entry_slot *slot, PyObject *entry, PyObject *sku, PyObject *region,
                            int64_t grain) {
    Py_XSETREF(slot->entry, Py_NewRef(entry));
    Py_XSETREF(slot->sku, Py_NewRef(sku));
    Py_XSETREF(slot->region, Py_NewRef(region));
    slot->grain = grain;
}

static void entry_cache_clear(caches_t *C) {
    for (int k = 0; k < ENTRY_SLOTS; k++) {
        Py_CLEAR(C->entries[k].entry);
        Py_CLEAR(C->entries[k].sku);
        Py_CLEAR(C->entries[k].region);
    }
}

static void caches_free(caches_t *C) {
    if (C == NULL) return;
    entry_cache_clear(C);
    for (int k = 0; k < STR_SLOTS; k++) Py_CLEAR(C->strs[k].str);
    PyMem_Free(C);
}

/* What every type of this module has: its name, a keyword-only __init__ (Name_init)
 * that makes it (Name.__new__ alone gives an object its methods refuse), and its doc. */
#define LANES_TYPE(Name, flags, doc)                                                        \
    PyVarObject_HEAD_INIT(NULL, 0) /* (ends in a comma) */                                  \
    .tp_name = "streams.core._lanes." #Name,                                                \
    .tp_doc = PyDoc_STR(doc), .tp_basicsize = sizeof(Name), .tp_flags = (flags),           \
    .tp_new = PyType_GenericNew, .tp_init = (initproc)Name##_init

/* The slots of a store type that holds Python objects (the cyclic GC's traverse and
 * clear), with its methods, getters and length: Base_dealloc, Base_traverse, Base_clear
 * (Base: the C type it is made of; SkuHours and Cells are both a Store), Name_methods,
 * Name_getset and Name_as_sequence. */
#define LANES_STORE_SLOTS(Name, Base)                                                       \
    .tp_dealloc = (destructor)Base##_dealloc, .tp_traverse = (traverseproc)Base##_traverse,  \
    .tp_clear = (inquiry)Base##_clear, .tp_methods = Name##_methods,                        \
    .tp_getset = Name##_getset, .tp_as_sequence = &Name##_as_sequence

/* A store type that counts what is pending (SkuHours, Cells, CellHashes): its `pending`
 * getter, its length, and the type (LANES_STORE_SLOTS). Defines Name_getset,
 * Name_as_sequence and NameType (file-scope tables, immutable once made) from
 * Base_pending, Base_len and what LANES_STORE_SLOTS names. */
#define LANES_STORE_TYPE(Name, Base, pending_doc, doc)                                      \
    static PyGetSetDef Name##_getset[] = {                                                  \
        {"pending", (getter)Base##_pending, NULL, pending_doc, NULL},                       \
        {NULL, NULL, NULL, NULL, NULL},                                                     \
    };                                                                                      \
    static PySequenceMethods Name##_as_sequence = {.sq_length = (lenfunc)Base##_len};       \
    static PyTypeObject Name##Type = {                                                      \
        LANES_TYPE(Name, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, doc),                     \
        LANES_STORE_SLOTS(Name, Base),                                                      \
    }

/* A PyMem array of *cap items of `size` bytes, reallocated with twice the room (`first`
 * items when it had none): the new array, *cap updated; NULL and MemoryError, the array
 * and *cap unchanged. */
static void *grown(void *p, Py_ssize_t *cap, size_t size, Py_ssize_t first) {
    const Py_ssize_t n = *cap ? 2 * *cap : first;
    void *q = PyMem_Realloc(p, (size_t)n * size);
    if (q == NULL) return PyErr_NoMemory();
    *cap = n;
    return q;
}

/* The containers the lanes add to the engine's state hold only ints, strs and other such
 * containers, so they can never be part of a reference cycle: they are untracked by the
 * cyclic GC (as CPython itself untracks tuples and dicts of atoms), which otherwise walks
 * every live cell vector and key again at each young collection. */
static inline PyObject *untracked(PyObject *o) {
    if (o != NULL) PyObject_GC_UnTrack(o);
    return o;
}

/* ------------------------------------------------------------------ IdSet */
/* The dedup state of one partition, owned here: streams.core.dedup.Deduplicator (the
 * pure-Python reference: the same methods, the same results, checked against each other
 * by tests/unit/test_core.py) without a Python object per id. The ids' 64-bit hashes are
 * kept twice, as the reference keeps them: in an open-addressing table (linear probing,
 * Fibonacci hashing, deletion by backward shift; 0 marks an empty slot, so the hash 0 is
 * a flag) and, in arrival order, in one array per hour bucket with its cut mark. Buckets
 * are kept in the order they were made (the reference's dict order). About 25 bytes per
 * id against the reference's 78 (bench/dedup_memory.py); PyMem, so tracemalloc sees it. */

typedef struct {
    int64_t bucket;
    uint64_t *ids; /* in arrival order; ids[cut:] are new since the last cut */
    Py_ssize_t n, cap, cut;
} idbucket_t;

typedef struct {
    PyObject_HEAD
    uint64_t *slots;   /* 1 << bits of them, or NULL before the first id */
    int bits;
    Py_ssize_t used;   /* ids in slots (the hash 0 is has_zero) */
    int has_zero;
    idbucket_t *b;     /* nb buckets (room for bcap) */
    Py_ssize_t nb, bcap;
    Py_ssize_t last;   /* the bucket of the last id added (consecutive ids mostly share it) */
    long long horizon_ms, bucket_ms;
    int ready;         /* set by __init__ (IdSet.__new__ alone leaves bucket_ms 0) */
} IdSet;

static inline size_t ids_home(int bits, uint64_t h) {
    return (size_t)((h * 0x9E3779B97F4A7C15ULL) >> (64 - bits));
}

static int ids_contains(const IdSet *S, uint64_t h) {
    if (h == 0) return S->has_zero;
    if (S->slots == NULL) return 0;
    const size_t mask = ((size_t)1 << S->bits) - 1;
    for (size_t i = ids_home(S->bits, h);; i = (i + 1) & mask) {
        if (S->slots[i] == h) return 1;
        if (S->slots[i] == 0) return 0;
    }
}

static int ids_resize(IdSet *S, int bits) {
    uint64_t *slots = PyMem_Calloc((size_t)1 << bits, sizeof(uint64_t));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    const size_t mask = ((size_t)1 << bits) - 1;
    const size_t old = S->slots == NULL ? 0 : (size_t)1 << S->bits;
    for (size_t j = 0; j < old; j++) {
        const uint64_t v = S->slots[j];
        if (v == 0) continue;
        size_t i = ids_home(bits, v);
        while (slots[i] != 0) i = (i + 1) & mask;
        slots[i] = v;
    }
    PyMem_Free(S->slots);
    S->slots = slots;
    S->bits = bits;
    return 0;
}

/* Add h to the table: 1 added, 0 already there, -1 error. At most 3/4 full. */
static int ids_put(IdSet *S, uint64_t h) {
    if (h == 0) {
        if (S->has_zero) return 0;
        S->has_zero = 1;
        return 1;
    }
    if (ids_contains(S, h)) return 0;
    if (S->slots == NULL || (size_t)(S->used + 1) * 4 > ((size_t)3 << S->bits)) {
        if (ids_resize(S, S->slots == NULL ? 4 : S->bits + 1) < 0) return -1;
    }
    const size_t mask = ((size_t)1 << S->bits) - 1;
    size_t i = ids_home(S->bits, h);
    while (S->slots[i] != 0) i = (i + 1) & mask;
    S->slots[i] = h;
    S->used++;
    return 1;
}

/* Remove h from the table (if there), shifting back the entries after it that may move. */
static void ids_remove(IdSet *S, uint64_t h) {
    if (h == 0) {
        S->has_zero = 0;
        return;
    }
    if (S->slots == NULL) return;
    const size_t mask = ((size_t)1 << S->bits) - 1;
    size_t i = ids_home(S->bits, h);
    for (;; i = (i + 1) & mask) {
        if (S->slots[i] == 0) return;
        if (S->slots[i] == h) break;
    }
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        const uint64_t v = S->slots[j];
        if (v == 0) break;
        const size_t k = ids_home(S->bits, v);
        /* v stays unless its home k lies outside (i, j], cyclically: then it moves to i */
        if (j > i ? (k <= i || k > j) : (k <= i && k > j)) {
            S->slots[i] = v;
            i = j;
        }
    }
    S->slots[i] = 0;
    S->used--;
}

static inline int64_t floor_div(int64_t a, int64_t b) {
    const int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* The index of the bucket, or -1 (with create: made at the end; -2 and an exception when
 * out of memory). */
static Py_ssize_t ids_bucket(IdSet *S, int64_t bucket, int create) {
    if (S->last >= 0 && S->last < S->nb && S->b[S->last].bucket == bucket) return S->last;
    for (Py_ssize_t k = S->nb - 1; k >= 0; k--) {
        if (S->b[k].bucket == bucket) return S->last = k;
    }
    if (!create) return -1;
    if (S->nb == S->bcap) {
        idbucket_t *b = grown(S->b, &S->bcap, sizeof *b, 16);
        if (b == NULL) return -2;
        S->b = b;
    }
    S->b[S->nb] = (idbucket_t){bucket, NULL, 0, 0, 0};
    return S->last = S->nb++;
}

/* Room for `more` ids in the bucket (grown by half). 0, or -1 and an exception. */
static int bucket_reserve(idbucket_t *B, Py_ssize_t more) {
    if (B->n + more <= B->cap) return 0;
    Py_ssize_t cap = B->cap + B->cap / 2 + 16;
    if (cap < B->n + more) cap = B->n + more;
    uint64_t *ids = PyMem_Realloc(B->ids, (size_t)cap * sizeof(uint64_t));
    if (ids == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    B->ids = ids;
    B->cap = cap;
    return 0;
}

/* Deduplicator.first_time for an id already hashed: 1 first time, 0 duplicate, -1 error. */
static int idset_add(IdSet *S, uint64_t h, int64_t ts) {
    if (ids_contains(S, h)) return 0;
    const Py_ssize_t k = ids_bucket(S, floor_div(ts, S->bucket_ms), 1);
    if (k < 0 || bucket_reserve(&S->b[k], 1) < 0 || ids_put(S, h) < 0) return -1;
    idbucket_t *B = &S->b[k];
    B->ids[B->n++] = h;
    return 1;
}

static int idset_ready(const IdSet *S) {
    if (S->ready) return 1;
    PyErr_SetString(PyExc_TypeError, "IdSet: made without its horizon_ms and bucket_ms");
    return 0;
}

static void IdSet_dealloc(IdSet *self) {
    for (Py_ssize_t k = 0; k < self->nb; k++) PyMem_Free(self->b[k].ids);
    PyMem_Free(self->b);
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int IdSet_init(IdSet *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"horizon_ms", "bucket_ms", NULL};
    long long horizon_ms = -1, bucket_ms = -1;
    if (self->ready) {
        PyErr_SetString(PyExc_TypeError, "IdSet: made once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$LL:IdSet", kwlist, &horizon_ms,
                                     &bucket_ms))
        return -1;
    if (horizon_ms < 0 || bucket_ms <= 0) {
        PyErr_SetString(PyExc_ValueError, "IdSet: horizon_ms >= 0 and bucket_ms > 0 expected, by keyword");
        return -1;
    }
    self->horizon_ms = horizon_ms;
    self->bucket_ms = bucket_ms;
    self->last = -1;
    self->ready = 1;
    return 0;
}

static Py_ssize_t IdSet_len(IdSet *self) { return self->used + self->has_zero; }

static PyObject *IdSet_first_time(IdSet *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!idset_ready(self)) return NULL;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "first_time(event_id: str, ts_ms: int) expected");
        return NULL;
    }
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(args[0], &n);
    if (p == NULL) return NULL;
    const long long ts = PyLong_AsLongLong(args[1]);
    if (ts == -1 && PyErr_Occurred()) return NULL;
    const int first = idset_add(self, blake2b64((const uint8_t *)p, (size_t)n), ts);
    if (first < 0) return NULL;
    return PyBool_FromLong(first);
}

static PyObject *IdSet_pending(IdSet *self, void *closure) {
    Py_ssize_t n = 0;
    for (Py_ssize_t k = 0; k < self->nb; k++) n += self->b[k].n - self->b[k].cut;
    return PyLong_FromSsize_t(n);
}

/* a list of the n 64-bit ints at a: unsigned (ids), or as int64 when `as_signed` */
static PyObject *ints_list(const uint64_t *a, Py_ssize_t n, int as_signed) {
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *v = as_signed ? PyLong_FromLongLong((long long)a[i])
                                : PyLong_FromUnsignedLongLong(a[i]);
        if (v == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, v);
    }
    return out;
}

/* The ids of the buckets (from their cut marks, or all), copied out before any Python
 * object is made: making one may run Python code (a GC callback) that adds ids. */
typedef struct {
    int64_t bucket;
    Py_ssize_t from, n; /* ids[from:from + n] of the bucket */
    uint64_t *ids;
} idcopy_t;

static idcopy_t *ids_copy(const IdSet *S, int all, Py_ssize_t *count) {
    Py_ssize_t total = 0, nb = 0;
    for (Py_ssize_t k = 0; k < S->nb; k++) {
        const Py_ssize_t from = all ? 0 : S->b[k].cut;
        if (all || S->b[k].n > from) {
            total += S->b[k].n - from;
            nb++;
        }
    }
    idcopy_t *c = PyMem_Malloc((size_t)(nb + 1) * sizeof(idcopy_t) +
                               (size_t)total * sizeof(uint64_t));
    if (c == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    uint64_t *p = (uint64_t *)(c + nb + 1);
    Py_ssize_t j = 0;
    for (Py_ssize_t k = 0; k < S->nb; k++) {
        const idbucket_t *B = &S->b[k];
        const Py_ssize_t from = all ? 0 : B->cut;
        if (!all && B->n <= from) continue;
        c[j] = (idcopy_t){B->bucket, from, B->n - from, p};
        memcpy(p, B->ids + from, (size_t)(B->n - from) * sizeof(uint64_t));
        p += B->n - from;
        j++;
    }
    *count = nb;
    return c;
}

static PyObject *IdSet_cut(IdSet *self, PyObject *unused) {
    if (!idset_ready(self)) return NULL;
    Py_ssize_t nc;
    idcopy_t *c = ids_copy(self, 0, &nc);
    if (c == NULL) return NULL;
    PyObject *taken = PyList_New(0), *before = PyDict_New();
    if (taken == NULL || before == NULL) goto fail;
    for (Py_ssize_t j = 0; j < nc; j++) {
        PyObject *item =
            Py_BuildValue("(LN)", (long long)c[j].bucket, ints_list(c[j].ids, c[j].n, 0));
        PyObject *bk = PyLong_FromLongLong(c[j].bucket), *mark = PyLong_FromSsize_t(c[j].from);
        const int bad = item == NULL || bk == NULL || mark == NULL ||
                        PyList_Append(taken, item) < 0 || PyDict_SetItem(before, bk, mark) < 0;
        Py_XDECREF(item);
        Py_XDECREF(bk);
        Py_XDECREF(mark);
        if (bad) goto fail;
    }
    /* the marks move past what was taken (ids added meanwhile stay pending) */
    for (Py_ssize_t j = 0; j < nc; j++) {
        const Py_ssize_t k = ids_bucket(self, c[j].bucket, 0);
        if (k >= 0 && self->b[k].cut < c[j].from + c[j].n) self->b[k].cut = c[j].from + c[j].n;
    }
    PyMem_Free(c);
    return Py_BuildValue("(NN)", taken, before);
fail:
    PyMem_Free(c);
    Py_XDECREF(taken);
    Py_XDECREF(before);
    return NULL;
}

static PyObject *IdSet_uncut(IdSet *self, PyObject *cut) {
    if (!idset_ready(self)) return NULL;
    if (!PyTuple_Check(cut) || PyTuple_GET_SIZE(cut) != 2 ||
        !PyDict_Check(PyTuple_GET_ITEM(cut, 1))) {
        PyErr_SetString(PyExc_TypeError, "uncut(cut) expected what cut() returned");
        return NULL;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(PyTuple_GET_ITEM(cut, 1), &pos, &key, &value)) {
        const long long bucket = PyLong_AsLongLong(key);
        const Py_ssize_t mark = PyLong_AsSsize_t(value);
        if ((bucket == -1 || mark == -1) && PyErr_Occurred()) return NULL;
        const Py_ssize_t k = ids_bucket(self, bucket, 0);
        if (k >= 0 && mark < self->b[k].cut) self->b[k].cut = mark < 0 ? 0 : mark;
    }
    Py_RETURN_NONE;
}

/* load(pairs): (hour bucket, id hash) pairs persisted by earlier flushes, new ones put
 * before their bucket's cut mark (not pending), in order, buckets made in the order they
 * first appear: the reference's load. All or nothing: on an error (a malformed pair, no
 * memory) the ids this call put in the table are taken out again. */
static PyObject *IdSet_load(IdSet *self, PyObject *pairs) {
    if (!idset_ready(self)) return NULL;
    PyObject *it = PyObject_GetIter(pairs);
    if (it == NULL) return NULL;
    int64_t *kb = NULL;   /* the distinct buckets of the new ids, first appearance order */
    Py_ssize_t nk = 0, kcap = 0, n = 0, cap = 0, *count = NULL, *at = NULL;
    struct { Py_ssize_t key; uint64_t h; } *got = NULL;
    PyObject *item, *ret = NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *seq = PySequence_Fast(item, "load: (bucket, id hash) pairs expected");
        Py_DECREF(item);
        if (seq == NULL) goto done;
        if (PySequence_Fast_GET_SIZE(seq) != 2) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "load: (bucket, id hash) pairs expected");
            goto done;
        }
        const long long bucket = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, 0));
        const unsigned long long h =
            (bucket == -1 && PyErr_Occurred())
                ? 0 : PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, 1));
        Py_DECREF(seq);
        if (PyErr_Occurred()) goto done;
        if (ids_contains(self, h)) continue;
        Py_ssize_t key = nk - 1;
        while (key >= 0 && kb[key] != bucket) key--;
        void *more;
        if (key < 0 && nk == kcap) {
            if ((more = grown(kb, &kcap, sizeof *kb, 16)) == NULL) goto done;
            kb = more;
        }
        if (n == cap) {
            if ((more = grown(got, &cap, sizeof *got, 1024)) == NULL) goto done;
            got = more;
        }
        if (ids_put(self, h) < 0) goto done;
        if (key < 0) kb[key = nk++] = bucket;
        got[n].key = key;
        got[n++].h = h;
    }
    if (PyErr_Occurred()) goto done;
    count = PyMem_Calloc((size_t)nk + 1, sizeof *count);
    at = PyMem_Calloc((size_t)nk + 1, sizeof *at);
    if (count == NULL || at == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) count[got[i].key]++;
    for (Py_ssize_t key = 0; key < nk; key++) { /* every allocation first */
        at[key] = ids_bucket(self, kb[key], 1); /* (buckets are only appended here) */
        if (at[key] < 0 || bucket_reserve(&self->b[at[key]], count[key]) < 0) goto done;
    }
    for (Py_ssize_t key = 0; key < nk; key++) { /* then room before each cut mark */
        idbucket_t *B = &self->b[at[key]];
        memmove(B->ids + B->cut + count[key], B->ids + B->cut,
                (size_t)(B->n - B->cut) * sizeof(uint64_t));
        B->n += count[key];
        count[key] = B->cut; /* from here: where the bucket's next loaded id goes */
    }
    for (Py_ssize_t i = 0; i < n; i++)
        self->b[at[got[i].key]].ids[count[got[i].key]++] = got[i].h;
    for (Py_ssize_t key = 0; key < nk; key++) self->b[at[key]].cut = count[key];
    n = 0; /* placed: nothing to take back */
    ret = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < n; i++) ids_remove(self, got[i].h);
    Py_DECREF(it);
    PyMem_Free(kb);
    PyMem_Free(got);
    PyMem_Free(count);
    PyMem_Free(at);
    return ret;
}

static PyObject *IdSet_expire(IdSet *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"watermark_ms", NULL};
    long long wm;
    if (!idset_ready(self) || !PyArg_ParseTupleAndKeywords(args, kwds, "L:expire", kwlist, &wm))
        return NULL;
    int64_t since;
    if (__builtin_sub_overflow((int64_t)wm, (int64_t)self->horizon_ms, &since))
        return PyLong_FromLong(0); /* below every bucket: nothing has ended */
    const int64_t limit = floor_div(since, self->bucket_ms);
    Py_ssize_t dropped = 0, kept = 0;
    for (Py_ssize_t k = 0; k < self->nb; k++) {
        idbucket_t *B = &self->b[k];
        if (B->bucket < limit) {
            for (Py_ssize_t i = 0; i < B->n; i++) ids_remove(self, B->ids[i]);
            dropped += B->n;
            PyMem_Free(B->ids);
        } else {
            self->b[kept++] = *B;
        }
    }
    self->nb = kept;
    self->last = -1;
    /* shrink a table left less than 1/8 full (an outage's backlog expired) */
    if (self->slots != NULL && self->bits > 4 && (size_t)self->used * 8 < ((size_t)1 << self->bits)) {
        int bits = 4;
        while ((size_t)(self->used + 1) * 2 > ((size_t)1 << bits)) bits++;
        if (ids_resize(self, bits) < 0) return NULL;
    }
    return PyLong_FromSsize_t(dropped);
}

static PyObject *IdSet_snapshot(IdSet *self, PyObject *unused) {
    if (!idset_ready(self)) return NULL;
    Py_ssize_t nc;
    idcopy_t *c = ids_copy(self, 1, &nc);
    if (c == NULL) return NULL;
    PyObject *out = PyDict_New();
    for (Py_ssize_t j = 0; out != NULL && j < nc; j++) {
        const Py_ssize_t k = ids_bucket(self, c[j].bucket, 0);
        PyObject *bk = PyLong_FromLongLong(c[j].bucket);
        PyObject *v = Py_BuildValue("(Nn)", ints_list(c[j].ids, c[j].n, 0),
                                    k >= 0 ? self->b[k].cut : c[j].n);
        if (bk == NULL || v == NULL || PyDict_SetItem(out, bk, v) < 0) Py_CLEAR(out);
        Py_XDECREF(bk);
        Py_XDECREF(v);
    }
    PyMem_Free(c);
    return out;
}

static PyObject *IdSet_sizeof(IdSet *self, PyObject *unused) {
    size_t n = sizeof(IdSet) + (size_t)self->bcap * sizeof(idbucket_t);
    if (self->slots != NULL) n += ((size_t)1 << self->bits) * sizeof(uint64_t);
    for (Py_ssize_t k = 0; k < self->nb; k++) n += (size_t)self->b[k].cap * sizeof(uint64_t);
    return PyLong_FromSize_t(n);
}

static PyMethodDef IdSet_methods[] = {
    {"first_time", (PyCFunction)(void (*)(void))IdSet_first_time, METH_FASTCALL,
     "first_time(event_id, ts_ms) -> bool: True the first time the id is offered."},
    {"cut", (PyCFunction)IdSet_cut, METH_NOARGS,
     "cut() -> Cut: take the ids first seen since the last cut, by hour bucket."},
    {"uncut", (PyCFunction)IdSet_uncut, METH_O,
     "uncut(cut): the write of a cut failed: its ids are pending again."},
    {"load", (PyCFunction)IdSet_load, METH_O,
     "load(pairs): restore persisted (hour bucket, id hash) pairs (not pending)."},
    {"expire", (PyCFunction)(void (*)(void))IdSet_expire, METH_VARARGS | METH_KEYWORDS,
     "expire(watermark_ms) -> int: forget the buckets that ended more than the horizon "
     "before the watermark; the number of ids forgotten."},
    {"snapshot", (PyCFunction)IdSet_snapshot, METH_NOARGS,
     "snapshot() -> {bucket: (ids in arrival order, cut mark)}, buckets in order."},
    {"__sizeof__", (PyCFunction)IdSet_sizeof, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef IdSet_members[] = {
    {"horizon_ms", T_LONGLONG, offsetof(IdSet, horizon_ms), READONLY, NULL},
    {"bucket_ms", T_LONGLONG, offsetof(IdSet, bucket_ms), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef IdSet_getset[] = {
    {"pending", (getter)IdSet_pending, NULL, "ids first seen since the last cut", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods IdSet_as_sequence = {.sq_length = (lenfunc)IdSet_len};

static PyTypeObject IdSetType = {
    LANES_TYPE(IdSet, Py_TPFLAGS_DEFAULT,
               "IdSet(*, horizon_ms, bucket_ms)\n\n"
               "A partition's dedup state, compiled: streams.core.dedup.Deduplicator's methods."),
    .tp_dealloc = (destructor)IdSet_dealloc,
    .tp_methods = IdSet_methods,
    .tp_members = IdSet_members,
    .tp_getset = IdSet_getset,
    .tp_as_sequence = &IdSet_as_sequence,
};

/* ------------------------------------------------------------------ Versions */
/* The catalog's versions, owned here: streams.core.catalog.CatalogVersions (the pure-Python
 * reference, the same methods and results, checked against each other by
 * tests/unit/test_compiled_lanes.py). Per SKU, up to max_versions (ts, attrs) pairs sorted
 * by ts, in C arrays; a dict maps the SKU to its entry's index (free entries are reused).
 * The lanes look versions up here by name and value, not by a tuple layout. */

#define MAX_VERSIONS 65536 /* per SKU (each entry has room for max_versions up front) */

typedef struct {
    Py_ssize_t n;     /* versions held; -1: a free entry */
    int64_t *times;   /* [max] ascending */
    PyObject **attrs; /* [max] strong references */
} ventry_t;

typedef struct {
    PyObject_HEAD
    PyObject *index;      /* sku -> int: its entry; NULL until __init__ */
    ventry_t *e;
    Py_ssize_t ne, ecap;  /* entries made, room */
    Py_ssize_t free_head; /* a free entry (its times[0] links the next), or -1 */
    Py_ssize_t max;
    long long generation;
} Versions;

static int versions_ready(const Versions *V) {
    if (V->index != NULL) return 1;
    PyErr_SetString(PyExc_TypeError, "Versions: made without its max_versions");
    return 0;
}

/* The SKU's entry, or NULL (no exception: not known; with one: an error). */
static ventry_t *versions_entry(const Versions *V, PyObject *sku) {
    PyObject *i = PyDict_GetItemWithError(V->index, sku);
    if (i == NULL) return NULL;
    const Py_ssize_t k = PyLong_AsSsize_t(i);
    if (k < 0 || k >= V->ne) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "Versions: a bad index");
        return NULL;
    }
    return &V->e[k];
}

/* bisect_right(times, t) - 1, at least 0: the version valid at t */
static Py_ssize_t version_index(const ventry_t *E, int64_t t) {
    Py_ssize_t lo = 0, hi = E->n;
    while (lo < hi) {
        const Py_ssize_t mid = (lo + hi) / 2;
        if (t < E->times[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo - 1 > 0 ? lo - 1 : 0;
}

static void ventry_release(ventry_t *E) {
    for (Py_ssize_t i = 0; i < E->n; i++) Py_CLEAR(E->attrs[i]);
    E->n = 0;
}

static int Versions_traverse(Versions *self, visitproc visit, void *arg) {
    Py_VISIT(self->index);
    for (Py_ssize_t k = 0; k < self->ne; k++) {
        for (Py_ssize_t i = 0; i < self->e[k].n; i++) Py_VISIT(self->e[k].attrs[i]);
    }
    return 0;
}

static int Versions_clear(Versions *self) {
    Py_CLEAR(self->index);
    for (Py_ssize_t k = 0; k < self->ne; k++) ventry_release(&self->e[k]);
    return 0;
}

static void Versions_dealloc(Versions *self) {
    PyObject_GC_UnTrack(self);
    Versions_clear(self);
    for (Py_ssize_t k = 0; k < self->ne; k++) {
        PyMem_Free(self->e[k].times);
        PyMem_Free(self->e[k].attrs);
    }
    PyMem_Free(self->e);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Versions_init(Versions *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_versions", NULL};
    Py_ssize_t max = -1;
    if (self->index != NULL) {
        PyErr_SetString(PyExc_TypeError, "Versions: made once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$n:Versions", kwlist, &max)) return -1;
    if (max < 1 || max > MAX_VERSIONS) {
        PyErr_SetString(PyExc_ValueError,
                        "Versions: 1 <= max_versions <= 65536 expected, by keyword");
        return -1;
    }
    self->index = PyDict_New();
    if (self->index == NULL) return -1;
    self->max = max;
    self->free_head = -1;
    return 0;
}

/* put(sku, ts, attrs): a version of sku valid from ts; the same ts replaces that version;
 * beyond max_versions the oldest goes. */
static PyObject *Versions_put(Versions *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!versions_ready(self)) return NULL;
    if (nargs != 3 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "put(sku: str, ts: int, attrs) expected");
        return NULL;
    }
    const long long ts = PyLong_AsLongLong(args[1]);
    if (ts == -1 && PyErr_Occurred()) return NULL;
    ventry_t *E = versions_entry(self, args[0]);
    if (E == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_ssize_t k = self->free_head;
        if (k >= 0) {
            self->free_head = (Py_ssize_t)self->e[k].times[0];
        } else {
            if (self->ne == self->ecap) {
                ventry_t *e = grown(self->e, &self->ecap, sizeof *e, 64);
                if (e == NULL) return NULL;
                self->e = e;
            }
            ventry_t fresh = {-1, PyMem_Malloc((size_t)self->max * sizeof(int64_t)),
                              PyMem_Malloc((size_t)self->max * sizeof(PyObject *))};
            if (fresh.times == NULL || fresh.attrs == NULL) {
                PyMem_Free(fresh.times);
                PyMem_Free(fresh.attrs);
                return PyErr_NoMemory();
            }
            k = self->ne++;
            self->e[k] = fresh;
            self->e[k].times[0] = -1; /* (a free entry's link) */
        }
        PyObject *i = PyLong_FromSsize_t(k);
        if (i == NULL || PyDict_SetItem(self->index, args[0], i) < 0) {
            Py_XDECREF(i);
            self->e[k].times[0] = (int64_t)self->free_head; /* back on the free list */
            self->free_head = k;
            return NULL;
        }
        Py_DECREF(i);
        E = &self->e[k];
        E->n = 0;
    }
    self->generation++;
    Py_ssize_t i = E->n;
    while (i > 0 && E->times[i - 1] > ts) i--; /* bisect_right, from the newest end */
    if (i > 0 && E->times[i - 1] == ts) {
        Py_SETREF(E->attrs[i - 1], Py_NewRef(args[2]));
        Py_RETURN_NONE;
    }
    if (E->n == self->max) { /* full: the oldest goes (even when it is the new one) */
        if (i == 0) Py_RETURN_NONE;
        PyObject *old = E->attrs[0];
        memmove(E->times, E->times + 1, (size_t)(i - 1) * sizeof(int64_t));
        memmove(E->attrs, E->attrs + 1, (size_t)(i - 1) * sizeof(PyObject *));
        i--;
        E->times[i] = ts;
        E->attrs[i] = Py_NewRef(args[2]);
        Py_DECREF(old);
        Py_RETURN_NONE;
    }
    memmove(E->times + i + 1, E->times + i, (size_t)(E->n - i) * sizeof(int64_t));
    memmove(E->attrs + i + 1, E->attrs + i, (size_t)(E->n - i) * sizeof(PyObject *));
    E->times[i] = ts;
    E->attrs[i] = Py_NewRef(args[2]);
    E->n++;
    Py_RETURN_NONE;
}

static PyObject *Versions_delete(Versions *self, PyObject *sku) {
    if (!versions_ready(self)) return NULL;
    ventry_t *E = versions_entry(self, sku);
    if (E == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_FALSE;
    }
    /* the entry is freed before its attributes are released: a release may run Python
     * code (a __del__) that puts again, and then finds a consistent store */
    const Py_ssize_t k = E - self->e, n = E->n;
    PyObject **drop = PyMem_Malloc((size_t)n * sizeof(PyObject *));
    if (drop == NULL) return PyErr_NoMemory();
    if (PyDict_DelItem(self->index, sku) < 0) { /* (may run Python code: a key's __eq__) */
        PyMem_Free(drop);
        return NULL;
    }
    E = &self->e[k]; /* the entries may have moved; entry k is in neither index nor list */
    memcpy(drop, E->attrs, (size_t)n * sizeof(PyObject *));
    E->n = -1;
    E->times[0] = (int64_t)self->free_head;
    self->free_head = k;
    self->generation++;
    for (Py_ssize_t i = 0; i < n; i++) Py_DECREF(drop[i]);
    PyMem_Free(drop);
    Py_RETURN_TRUE;
}

/* (sku, t...): the count checked (a TypeError naming `call` when wrong) and the times
 * after the SKU read into t. 1, or 0 with an exception. */
static int sku_times(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *call,
                     long long *t) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s expected", call);
        return 0;
    }
    for (Py_ssize_t i = 1; i < want; i++) {
        t[i - 1] = PyLong_AsLongLong(args[i]);
        if (t[i - 1] == -1 && PyErr_Occurred()) return 0;
    }
    return 1;
}

static PyObject *Versions_lookup(Versions *self, PyObject *const *args, Py_ssize_t nargs) {
    long long ts;
    if (!versions_ready(self) || !sku_times(args, nargs, 2, "lookup(sku, ts)", &ts))
        return NULL;
    const ventry_t *E = versions_entry(self, args[0]);
    if (E == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    return Py_NewRef(E->attrs[version_index(E, ts)]);
}

/* lookup(sku, first) if the same version is valid through last, else False; None for a
 * SKU not known. A new reference, NULL on error. */
static PyObject *versions_span(const Versions *V, PyObject *sku, int64_t first, int64_t last) {
    const ventry_t *E = versions_entry(V, sku);
    if (E == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    const Py_ssize_t i = version_index(E, first);
    if (i != version_index(E, last)) return Py_NewRef(Py_False);
    return Py_NewRef(E->attrs[i]);
}

static PyObject *Versions_lookup_span(Versions *self, PyObject *const *args, Py_ssize_t nargs) {
    long long t[2];
    if (!versions_ready(self) || !sku_times(args, nargs, 3, "lookup_span(sku, first, last)", t))
        return NULL;
    return versions_span(self, args[0], t[0], t[1]);
}

static PyObject *Versions_latest(Versions *self, PyObject *sku) {
    if (!versions_ready(self)) return NULL;
    const ventry_t *E = versions_entry(self, sku);
    if (E == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    return Py_NewRef(E->attrs[E->n - 1]);
}

static PyObject *Versions_skus(Versions *self, PyObject *unused) {
    if (!versions_ready(self)) return NULL;
    return PyDict_Keys(self->index);
}

static PyObject *Versions_of(Versions *self, PyObject *sku) {
    if (!versions_ready(self)) return NULL;
    const ventry_t *E = versions_entry(self, sku);
    if (E == NULL) return PyErr_Occurred() ? NULL : PyList_New(0);
    /* copied out (attributes held) before any Python object is made: making one may run
     * Python code that changes the store */
    const Py_ssize_t n = E->n;
    int64_t *times = PyMem_Malloc((size_t)n * (sizeof(int64_t) + sizeof(PyObject *)));
    if (times == NULL) return PyErr_NoMemory();
    PyObject **attrs = (PyObject **)(times + n);
    memcpy(times, E->times, (size_t)n * sizeof(int64_t));
    for (Py_ssize_t i = 0; i < n; i++) attrs[i] = Py_NewRef(E->attrs[i]);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *pair = Py_BuildValue("(LO)", (long long)times[i], attrs[i]);
        if (pair == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, pair);
    }
    for (Py_ssize_t i = 0; i < n; i++) Py_DECREF(attrs[i]);
    PyMem_Free(times);
    return out;
}

static Py_ssize_t Versions_len(Versions *self) {
    return self->index == NULL ? 0 : PyDict_GET_SIZE(self->index);
}

static int Versions_contains(Versions *self, PyObject *sku) {
    return self->index == NULL ? 0 : PyDict_Contains(self->index, sku);
}

static PyObject *Versions_generation(Versions *self, void *closure) {
    return PyLong_FromLongLong(self->generation);
}

static PyMethodDef Versions_methods[] = {
    {"put", (PyCFunction)(void (*)(void))Versions_put, METH_FASTCALL,
     "put(sku, ts, attrs): a version of sku valid from ts (the same ts replaces it)."},
    {"delete", (PyCFunction)Versions_delete, METH_O,
     "delete(sku) -> bool: forget every version of sku."},
    {"lookup", (PyCFunction)(void (*)(void))Versions_lookup, METH_FASTCALL,
     "lookup(sku, ts) -> attrs or None: the version valid at ts."},
    {"lookup_span", (PyCFunction)(void (*)(void))Versions_lookup_span, METH_FASTCALL,
     "lookup_span(sku, first, last) -> attrs, False (a version starts inside) or None."},
    {"latest", (PyCFunction)Versions_latest, METH_O, "latest(sku) -> attrs or None."},
    {"skus", (PyCFunction)Versions_skus, METH_NOARGS, "skus() -> the SKUs known, in order."},
    {"versions_of", (PyCFunction)Versions_of, METH_O,
     "versions_of(sku) -> [(ts, attrs)], oldest first."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Versions_getset[] = {
    {"generation", (getter)Versions_generation, NULL,
     "bumped by every put and delete: lookups cached under it stay valid", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Versions_members[] = {
    {"max_versions", T_PYSSIZET, offsetof(Versions, max), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PySequenceMethods Versions_as_sequence = {
    .sq_length = (lenfunc)Versions_len, .sq_contains = (objobjproc)Versions_contains};

static PyTypeObject VersionsType = {
    LANES_TYPE(Versions, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
               "Versions(*, max_versions)\n\n"
               "The catalog's versions by SKU, compiled: streams.core.catalog.CatalogVersions."),
    LANES_STORE_SLOTS(Versions, Versions),
    .tp_members = Versions_members,
};

/* ------------------------------------------------------------------ index tables */
/* An open-addressing table of entry indices for a store of entries that keep their own
 * 64-bit hash (SkuHours, Cells): linear probing, Fibonacci hashing, at most half full,
 * deletion by backward shift; -1 is an empty slot. The store finds an entry by probing
 * from it_home and comparing its own keys; it_hash_fn reads the hash of entry k (0 for a
 * free entry, which is not in the table). */
typedef struct {
    Py_ssize_t *slots; /* 1 << bits entry indices, or NULL before the first */
    int bits;
} itable_t;

typedef int (*it_hash_fn)(const void *store, Py_ssize_t k, uint64_t *h);

static inline size_t it_home(int bits, uint64_t h) {
    return (size_t)((h * 0x9E3779B97F4A7C15ULL) >> (64 - bits));
}

static inline size_t it_mask(const itable_t *T) { return ((size_t)1 << T->bits) - 1; }

/* entry k, of hash h, into its slot (the table has room) */
static void it_insert(itable_t *T, Py_ssize_t k, uint64_t h) {
    const size_t mask = it_mask(T);
    size_t i = it_home(T->bits, h);
    while (T->slots[i] >= 0) i = (i + 1) & mask;
    T->slots[i] = k;
}

/* the table remade with 1 << bits slots from the live ones of entries [0, ne): 0, or -1
 * and MemoryError (the table unchanged) */
static int it_resize(itable_t *T, int bits, Py_ssize_t ne, const void *store,
                     it_hash_fn hash_at) {
    Py_ssize_t *slots = PyMem_Malloc(((size_t)1 << bits) * sizeof(Py_ssize_t));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(T->slots);
    T->slots = slots;
    T->bits = bits;
    for (size_t i = 0; i <= it_mask(T); i++) slots[i] = -1;
    uint64_t h;
    for (Py_ssize_t k = 0; k < ne; k++)
        if (hash_at(store, k, &h)) it_insert(T, k, h);
    return 0;
}

/* room for live + 1 entries: 0, or -1 and MemoryError */
static int it_reserve(itable_t *T, Py_ssize_t live, Py_ssize_t ne, const void *store,
                      it_hash_fn hash_at) {
    if (T->slots != NULL && (size_t)(live + 1) * 2 <= ((size_t)1 << T->bits)) return 0;
    return it_resize(T, T->slots == NULL ? 8 : T->bits + 1, ne, store, hash_at);
}

/* entry k, of hash h, out of the table (deletion by backward shift) */
static void it_unlink(itable_t *T, Py_ssize_t k, uint64_t h, const void *store,
                      it_hash_fn hash_at) {
    const size_t mask = it_mask(T);
    size_t i = it_home(T->bits, h);
    while (T->slots[i] != k) i = (i + 1) & mask;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        const Py_ssize_t v = T->slots[j];
        if (v < 0) break;
        uint64_t hv = 0;
        (void)hash_at(store, v, &hv);
        const size_t home = it_home(T->bits, hv);
        /* v stays unless its home lies outside (i, j], cyclically: then it moves to i */
        if (j > i ? (home <= i || home > j) : (home <= i && home > j)) {
            T->slots[i] = v;
            i = j;
        }
    }
    T->slots[i] = -1;
}

/* a table left less than 1/8 full (a backlog evicted) made small again; best effort */
static void it_shrink(itable_t *T, Py_ssize_t live, Py_ssize_t ne, const void *store,
                      it_hash_fn hash_at) {
    if (T->slots == NULL || T->bits <= 8 || (size_t)live * 8 >= ((size_t)1 << T->bits)) return;
    int bits = 8;
    while ((size_t)(live + 1) * 2 > ((size_t)1 << bits)) bits++;
    if (it_resize(T, bits, ne, store, hash_at) < 0) PyErr_Clear(); /* (the larger is good) */
}

static size_t it_sizeof(const itable_t *T) {
    return T->slots == NULL ? 0 : ((size_t)1 << T->bits) * sizeof(Py_ssize_t);
}

/* An int argument as int64: 1, or 0 with a TypeError/OverflowError. Only ints (not any
 * object with __index__): no Python code runs. */
static int int_arg(PyObject *o, int64_t *out) {
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "an int expected, not %.100s", Py_TYPE(o)->tp_name);
        return 0;
    }
    const long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return 0;
    *out = v;
    return 1;
}

/* A METH_FASTCALL method's argument count: 1, or 0 with a TypeError naming its usage. */
static int nargs_are(Py_ssize_t nargs, Py_ssize_t n, const char *usage) {
    if (nargs == n) return 1;
    PyErr_Format(PyExc_TypeError, "%s expected", usage);
    return 0;
}

/* ------------------------------------------------------------------ CellHashes */
/* Per cell, the 64-bit hashes seen there since the last cut, owned here: a partition's
 * visitor hashes and its shops' contributor tags (streams.core.demand.CellHashes is the
 * pure-Python reference: the same methods and results, checked against each other by
 * tests/unit/test_compiled_lanes.py). Each cell has an entry (its key, a reference to the
 * cell's key tuple, and how many hashes it holds), found by a dict from the key to its
 * index. A cell's *handle* is its index with the number of cuts made in the bits above
 * HANDLE_BITS: the hot entries hold it (entries never move before the cut, and
 * PartitionState.detach clears the hot entries with the cut), and one kept past a cut
 * is refused. The (entry, hash) pairs sit in one open-addressing table (linear probing,
 * Fibonacci hashing, no deletion: a cut empties it), 16-byte slots at most half full,
 * without a Python object per hash. The cut returns each cell's hashes sorted and
 * empties everything. */

#define HANDLE_BITS 32

typedef struct {
    PyObject *key; /* the cell's key */
    Py_ssize_t n;  /* hashes held */
} chcell_t;

typedef struct {
    uint64_t h;
    Py_ssize_t cell; /* -1: empty */
} chpair_t;

typedef struct {
    PyObject_HEAD
    PyObject *index;       /* key -> int: its entry; NULL until __init__ */
    chcell_t *c;
    Py_ssize_t nc, ccap;
    chpair_t *pairs;       /* 1 << bits of them, or NULL before the first */
    int bits;
    Py_ssize_t used;       /* pairs held */
    long long cuts;        /* cuts made (in a handle's high bits: one kept past a cut is
                              refused) */
} CellHashes;

static int cellhashes_ready(const CellHashes *S) {
    if (S->index != NULL) return 1;
    PyErr_SetString(PyExc_TypeError, "CellHashes: made without __init__");
    return 0;
}

static inline size_t ch_home(int bits, uint64_t h, Py_ssize_t cell) {
    return (size_t)(((h ^ ((uint64_t)cell * 0xC2B2AE3D27D4EB4FULL)) * 0x9E3779B97F4A7C15ULL) >>
                    (64 - bits));
}

static int ch_resize(CellHashes *S, int bits) {
    chpair_t *p = PyMem_Malloc(((size_t)1 << bits) * sizeof(chpair_t));
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    const size_t mask = ((size_t)1 << bits) - 1;
    for (size_t i = 0; i <= mask; i++) p[i].cell = -1;
    const size_t old = S->pairs == NULL ? 0 : (size_t)1 << S->bits;
    for (size_t j = 0; j < old; j++) {
        if (S->pairs[j].cell < 0) continue;
        size_t i = ch_home(bits, S->pairs[j].h, S->pairs[j].cell);
        while (p[i].cell >= 0) i = (i + 1) & mask;
        p[i] = S->pairs[j];
    }
    PyMem_Free(S->pairs);
    S->pairs = p;
    S->bits = bits;
    return 0;
}

/* hash h into cell k: 1 added, 0 already there, -1 error. No Python code runs. */
static int cellhashes_add(CellHashes *S, Py_ssize_t k, uint64_t h) {
    if (S->pairs == NULL || (size_t)(S->used + 1) * 2 > ((size_t)1 << S->bits)) {
        if (ch_resize(S, S->pairs == NULL ? 10 : S->bits + 1) < 0) return -1;
    }
    const size_t mask = ((size_t)1 << S->bits) - 1;
    size_t i = ch_home(S->bits, h, k);
    for (; S->pairs[i].cell >= 0; i = (i + 1) & mask)
        if (S->pairs[i].h == h && S->pairs[i].cell == k) return 0;
    S->pairs[i].h = h;
    S->pairs[i].cell = k;
    S->used++;
    S->c[k].n++;
    return 1;
}

/* The entry of key (made when new): its index, or -1 with an exception. */
static Py_ssize_t cellhashes_entry(CellHashes *S, PyObject *key) {
    PyObject *i = PyDict_GetItemWithError(S->index, key);
    if (i != NULL) {
        const Py_ssize_t k = PyLong_AsSsize_t(i);
        if (k < 0 || k >= S->nc) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "CellHashes: a bad index");
            return -1;
        }
        return k;
    }
    if (PyErr_Occurred()) return -1;
    if (S->nc >= ((Py_ssize_t)1 << HANDLE_BITS) - 1) {
        PyErr_SetString(PyExc_OverflowError, "CellHashes: too many cells for one cut");
        return -1;
    }
    if (S->nc == S->ccap) {
        chcell_t *c = grown(S->c, &S->ccap, sizeof *c, 256);
        if (c == NULL) return -1;
        S->c = c;
    }
    const Py_ssize_t k = S->nc;
    PyObject *ki = PyLong_FromSsize_t(k);
    if (ki == NULL) return -1;
    const long long cuts = S->cuts;
    const int rc = PyDict_SetItem(S->index, key, ki); /* (a key's __eq__ may run) */
    Py_DECREF(ki);
    if (rc < 0) return -1;
    if (S->cuts != cuts || S->nc != k) { /* (changed by that Python code) */
        if (PyDict_DelItem(S->index, key) < 0) PyErr_Clear(); /* (not a cell: out again) */
        PyErr_SetString(PyExc_RuntimeError, "CellHashes: changed while a cell was added");
        return -1;
    }
    S->c[k].key = Py_NewRef(key);
    S->c[k].n = 0;
    S->nc++;
    return k;
}

/* A handle argument: the cell's index, or -1 with an exception. */
static Py_ssize_t cellhashes_handle_arg(const CellHashes *S, PyObject *arg) {
    if (!PyLong_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "CellHashes: a handle is an int");
        return -1;
    }
    const long long v = PyLong_AsLongLong(arg);
    if (v == -1 && PyErr_Occurred()) return -1;
    const long long k = v & (((long long)1 << HANDLE_BITS) - 1);
    if (v < 0 || (v >> HANDLE_BITS) != (S->cuts & 0x7fffffffLL) || k >= S->nc) {
        PyErr_SetString(PyExc_KeyError, "CellHashes: not a live handle (cut since?)");
        return -1;
    }
    return (Py_ssize_t)k;
}

/* the handle of cell k (a new reference) */
static PyObject *cellhashes_handle_of(const CellHashes *S, Py_ssize_t k) {
    return PyLong_FromLongLong(((S->cuts & 0x7fffffffLL) << HANDLE_BITS) | (long long)k);
}

/* Empty after a cut. The table keeps its size for the next cut's pairs unless this one
 * filled less than 1/8 of it (a burst is over): then it starts small again. */
static void cellhashes_empty(CellHashes *S) {
    PyObject *index = S->index;
    for (Py_ssize_t k = 0; k < S->nc; k++) Py_CLEAR(S->c[k].key);
    S->nc = 0;
    if (S->pairs != NULL) {
        if (S->bits > 10 && (size_t)S->used * 8 < ((size_t)1 << S->bits)) {
            PyMem_Free(S->pairs);
            S->pairs = NULL;
            S->bits = 0;
        } else {
            for (size_t i = 0; i < (size_t)1 << S->bits; i++) S->pairs[i].cell = -1;
        }
    }
    S->used = 0;
    if (index != NULL) PyDict_Clear(index);
}

static int CellHashes_traverse(CellHashes *self, visitproc visit, void *arg) {
    Py_VISIT(self->index);
    for (Py_ssize_t k = 0; k < self->nc; k++) Py_VISIT(self->c[k].key);
    return 0;
}

static int CellHashes_clear(CellHashes *self) {
    for (Py_ssize_t k = 0; k < self->nc; k++) Py_CLEAR(self->c[k].key);
    self->nc = 0;
    self->used = 0;
    PyMem_Free(self->pairs);
    self->pairs = NULL;
    self->bits = 0;
    Py_CLEAR(self->index);
    return 0;
}

static void CellHashes_dealloc(CellHashes *self) {
    PyObject_GC_UnTrack(self);
    CellHashes_clear(self);
    PyMem_Free(self->c);
    PyMem_Free(self->pairs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int CellHashes_init(CellHashes *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (self->index != NULL) {
        PyErr_SetString(PyExc_TypeError, "CellHashes: made once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":CellHashes", kwlist)) return -1;
    self->index = PyDict_New();
    return self->index == NULL ? -1 : 0;
}

/* handle(key) -> int */
static PyObject *CellHashes_handle(CellHashes *self, PyObject *key) {
    if (!cellhashes_ready(self)) return NULL;
    if (!PyTuple_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "CellHashes: a cell key is a tuple");
        return NULL;
    }
    const Py_ssize_t k = cellhashes_entry(self, key);
    return k < 0 ? NULL : cellhashes_handle_of(self, k);
}

/* the hash argument: an int in [0, 2**64) */
static int hash_arg(PyObject *o, uint64_t *h) {
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "CellHashes: a hash is an int");
        return 0;
    }
    *h = PyLong_AsUnsignedLongLong(o);
    return !(*h == (uint64_t)-1 && PyErr_Occurred());
}

/* add(handle, h) */
static PyObject *CellHashes_add(CellHashes *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!cellhashes_ready(self) || !nargs_are(nargs, 2, "add(handle, h)")) return NULL;
    uint64_t h;
    if (!hash_arg(args[1], &h)) return NULL;
    const Py_ssize_t k = cellhashes_handle_arg(self, args[0]);
    if (k < 0 || cellhashes_add(self, k, h) < 0) return NULL;
    Py_RETURN_NONE;
}

/* key_of(handle) -> the cell key */
static PyObject *CellHashes_key_of(CellHashes *self, PyObject *handle) {
    if (!cellhashes_ready(self)) return NULL;
    const Py_ssize_t k = cellhashes_handle_arg(self, handle);
    return k < 0 ? NULL : Py_NewRef(self->c[k].key);
}

static int cmp_u64(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* [(key, [hashes ascending])] of the cells holding any, in the order the cells were made
 * (copied out of the table before any Python object is made); NULL with an exception. */
static PyObject *cellhashes_items(CellHashes *S, int with_empty) {
    const Py_ssize_t nc = S->nc, used = S->used;
    /* one block (zeroed): start[nc + 1], flat[used], keys[nc], all of 8-byte items */
    _Static_assert(sizeof(Py_ssize_t) == 8 && sizeof(PyObject *) == 8, "a 64-bit build");
    Py_ssize_t *start = PyMem_Calloc((size_t)(nc + 1) + (size_t)used + (size_t)nc, 8);
    if (start == NULL) return PyErr_NoMemory();
    uint64_t *flat = (uint64_t *)(start + nc + 1);
    PyObject **keys = (PyObject **)(flat + used);
    PyObject *out = NULL;
    for (Py_ssize_t k = 0; k < nc; k++) {
        start[k + 1] = start[k] + S->c[k].n;
        keys[k] = Py_NewRef(S->c[k].key);
    }
    {
        Py_ssize_t *fill = PyMem_Malloc((size_t)(nc ? nc : 1) * sizeof(Py_ssize_t));
        if (fill == NULL) {
            PyErr_NoMemory();
            for (Py_ssize_t k = 0; k < nc; k++) Py_DECREF(keys[k]);
            goto done;
        }
        memcpy(fill, start, (size_t)nc * sizeof(Py_ssize_t));
        const size_t slots = S->pairs == NULL ? 0 : (size_t)1 << S->bits;
        for (size_t i = 0; i < slots; i++)
            if (S->pairs[i].cell >= 0) flat[fill[S->pairs[i].cell]++] = S->pairs[i].h;
        PyMem_Free(fill);
    }
    for (Py_ssize_t k = 0; k < nc; k++)
        qsort(flat + start[k], (size_t)(start[k + 1] - start[k]), sizeof(uint64_t), cmp_u64);
    /* from here only copies are read: making objects may run Python code */
    out = PyList_New(0);
    for (Py_ssize_t k = 0; k < nc; k++) {
        const Py_ssize_t n = start[k + 1] - start[k];
        if (out == NULL || (n == 0 && !with_empty)) continue;
        PyObject *hs = PyList_New(n);
        for (Py_ssize_t j = 0; hs != NULL && j < n; j++) {
            PyObject *x = PyLong_FromUnsignedLongLong(flat[start[k] + j]);
            if (x == NULL) Py_CLEAR(hs);
            else PyList_SET_ITEM(hs, j, x);
        }
        PyObject *pair = hs == NULL ? NULL : PyTuple_Pack(2, keys[k], hs);
        Py_XDECREF(hs);
        if (pair == NULL || PyList_Append(out, pair) < 0) Py_CLEAR(out);
        Py_XDECREF(pair);
    }
    for (Py_ssize_t k = 0; k < nc; k++) Py_DECREF(keys[k]);
done:
    PyMem_Free(start);
    return out;
}

/* cut() -> [(key, [hashes ascending])]: the cells' hashes since the last cut (cells
 * without any left out); everything is emptied and every handle ends */
static PyObject *CellHashes_cut(CellHashes *self, PyObject *unused) {
    if (!cellhashes_ready(self)) return NULL;
    const long long cuts = self->cuts;
    const Py_ssize_t nc = self->nc, used = self->used;
    PyObject *out = cellhashes_items(self, 0);
    if (out == NULL) return NULL;
    if (self->cuts != cuts || self->nc != nc || self->used != used) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "CellHashes: changed while it was being cut");
        return NULL;
    }
    self->cuts++;
    cellhashes_empty(self);
    return out;
}

/* uncut(items): the write of a cut failed: its hashes are pending again (merged) */
static PyObject *CellHashes_uncut(CellHashes *self, PyObject *items) {
    if (!cellhashes_ready(self)) return NULL;
    PyObject *seq = PySequence_Tuple(items); /* (a copy: a key's __eq__ cannot change it) */
    if (seq == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seq); i++) {
        PyObject *pair = PyTuple_GET_ITEM(seq, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyTuple_Check(PyTuple_GET_ITEM(pair, 0)) || !PyList_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "uncut: (key, [hashes]) pairs expected");
            goto error;
        }
        PyObject *hs = PyTuple_GET_ITEM(pair, 1);
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(hs); j++) {
            uint64_t h;
            if (!hash_arg(PyList_GET_ITEM(hs, j), &h)) goto error;
        }
        const Py_ssize_t k = cellhashes_entry(self, PyTuple_GET_ITEM(pair, 0));
        if (k < 0) goto error;
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(hs); j++) {
            uint64_t h;
            if (!hash_arg(PyList_GET_ITEM(hs, j), &h) || cellhashes_add(self, k, h) < 0)
                goto error;
        }
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
error:
    Py_DECREF(seq);
    return NULL;
}

/* snapshot() -> {key: set(hashes)} (cells without hashes included) */
static PyObject *CellHashes_snapshot(CellHashes *self, PyObject *unused) {
    if (!cellhashes_ready(self)) return NULL;
    PyObject *items = cellhashes_items(self, 1);
    if (items == NULL) return NULL;
    PyObject *out = PyDict_New();
    for (Py_ssize_t i = 0; out != NULL && i < PyList_GET_SIZE(items); i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        PyObject *set = PySet_New(PyTuple_GET_ITEM(pair, 1));
        if (set == NULL || PyDict_SetItem(out, PyTuple_GET_ITEM(pair, 0), set) < 0) Py_CLEAR(out);
        Py_XDECREF(set);
    }
    Py_DECREF(items);
    return out;
}

static Py_ssize_t CellHashes_len(CellHashes *self) { return self->nc; }

static PyObject *CellHashes_pending(CellHashes *self, void *closure) {
    return PyLong_FromSsize_t(self->used);
}

static PyObject *CellHashes_sizeof(CellHashes *self, PyObject *unused) {
    size_t n = sizeof(CellHashes) + (size_t)self->ccap * sizeof(chcell_t);
    if (self->pairs != NULL) n += ((size_t)1 << self->bits) * sizeof(chpair_t);
    return PyLong_FromSize_t(n);
}

static PyMethodDef CellHashes_methods[] = {
    {"handle", (PyCFunction)CellHashes_handle, METH_O,
     "handle(key) -> int: the cell's entry (made if new), until the next cut."},
    {"add", (PyCFunction)(void (*)(void))CellHashes_add, METH_FASTCALL,
     "add(handle, h): the hash h (an int in [0, 2**64)) seen in the handle's cell."},
    {"cut", (PyCFunction)CellHashes_cut, METH_NOARGS,
     "cut() -> [(key, [hashes ascending])]: take everything since the last cut."},
    {"key_of", (PyCFunction)CellHashes_key_of, METH_O, "key_of(handle) -> the cell's key."},
    {"uncut", (PyCFunction)CellHashes_uncut, METH_O,
     "uncut(items): the write of a cut failed: its hashes are pending again."},
    {"snapshot", (PyCFunction)CellHashes_snapshot, METH_NOARGS,
     "snapshot() -> {key: set of hashes}, every cell made since the last cut."},
    {"__sizeof__", (PyCFunction)CellHashes_sizeof, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

LANES_STORE_TYPE(CellHashes, CellHashes, "(cell, hash) pairs since the last cut",
                 "CellHashes()\n\n"
                 "Per cell, the hashes seen since the last cut, compiled: "
                 "streams.core.demand.CellHashes.");

/* ------------------------------------------------------------------ counter stores */
/* A partition's counters, owned here, in two types of one implementation (Store):
 * - SkuHours: per (sku, hour), the counters of inventory.SKU_MEASURES (its pure-Python
 *   reference: streams.core.inventory.SkuHours);
 * - Cells: per cell (window_seconds, window_start_s, category, color, size, price_band,
 *   region), the demand.MEASURES (its reference: streams.core.demand.Cells).
 * Each type and its reference have the same methods and results, checked against each
 * other by tests/unit/test_compiled_lanes.py. Each key held has an entry in a C array:
 * a reference to the key's Python part (the SKU, an exact str; the cell's key, an exact
 * tuple of two ints and five strs: so comparing and hashing keys runs no Python code), a
 * 64-bit `at` (the SKU's hour, part of its key; the cell's window end), the counters as
 * int64 and a mark (changed since the last cut). A table of entry indices (the index
 * tables above) finds an entry without a Python object per lookup. The marked entries
 * are listed in the order marked, the order of a cut's keys (the references keep theirs
 * in a dict, in the same order): a cut takes them, and uncut gives them back when the
 * cut's write failed. An entry's *handle* is its index with the number of cuts made in
 * the bits above HANDLE_BITS: the lanes' hot entries hold it (they are cleared with the
 * cut), and one kept past a cut is refused. Eviction takes the entries whose time ended
 * at or before a bound (an hour's end; a window's end, windows of an hour or longer with
 * a bound of their own) from min-heaps of (end, entry), so it costs what it evicts; a
 * marked entry is kept, and evicted entries are reused. Numbers are taken only from ints
 * (PyLong_Check), so no Python code (an __index__) runs while an index into the entries
 * is held; where a Python object is made, which may run a finalizer that uses this
 * object, what is read from an entry is read again after. */

#define HOUR_S 3600
#define MAX_SLOTS 16
_Static_assert(N_SKU_SLOTS <= MAX_SLOTS && N_CELL_SLOTS <= MAX_SLOTS, "MAX_SLOTS");

typedef struct {
    PyObject *key;     /* SkuHours: the SKU; Cells: the key. NULL: a free entry */
    uint64_t hash;     /* the key's (with the hour, for a SKU's) */
    int64_t at;        /* SkuHours: the hour (in the key); Cells: the window's end */
    int32_t next_free; /* a free entry's next free one, or -1 */
    int dirty;         /* marked */
    int64_t v[];       /* the counters: kind_t.nv */
} entry_t;

typedef struct {
    int64_t end;
    Py_ssize_t k;
} cend_t;

typedef struct {
    cend_t *a;
    Py_ssize_t n, cap;
} cheap_t;

typedef struct {
    Py_ssize_t *a; /* the marked entries, in the order marked */
    Py_ssize_t n, cap;
} marks_t;

/* What sets the two types apart, besides their methods' arguments. */
typedef struct {
    const char *name, *fn_kw; /* the type's, and its callable's keyword */
    Py_ssize_t nv;            /* counters an entry */
    Py_ssize_t addable;       /* add() takes slots [0, addable) */
    int sku_hours;            /* the key is (sku, at) */
    const char *slot_error, *pair_error, *size_error; /* add's and load's errors */
    const char *evict_usage;
} kind_t;

static const kind_t SKU_HOURS = {"SkuHours", "hour_of", N_SKU_SLOTS, SKU_COUNT_TS, 1,
                                 "add: slot is not a counter",
                                 "load: ((sku, hour), counters) pairs expected",
                                 "load: nine counters expected", "evict(keep_from_s)"};
static const kind_t CELLS = {"Cells", "end_of", N_CELL_SLOTS, N_CELL_SLOTS, 0,
                             "add: slot is not a measure",
                             "load: (key, counters) pairs expected",
                             "load: six counters expected", "evict(short_s, long_s)"};

typedef struct {
    PyObject_HEAD
    PyObject *fn;         /* SkuHours: hour_of (epoch s -> its hour: MarketCalendar.hour);
                             Cells: end_of ((size, start_s) -> end_s: .end_of); NULL until
                             __init__ */
    const kind_t *kind;   /* SKU_HOURS or CELLS, from __init__ */
    size_t stride;        /* bytes an entry */
    char *e;              /* the entries */
    Py_ssize_t ne, ecap;  /* entries made, room */
    Py_ssize_t free_head; /* a free entry, or -1 */
    Py_ssize_t live;      /* entries held */
    itable_t table;       /* the entries' indices, by key */
    marks_t marks;        /* the marked entries, in the order marked */
    cheap_t ends[2];      /* (end, entry) of SkuHours' hours and of Cells' windows shorter
                             than an hour; of Cells' others */
    long long cuts;       /* cuts made (in a handle's high bits) */
} Store;

typedef Store SkuHours;
typedef Store Cells;

static PyTypeObject CellsType;

static inline entry_t *ent(const Store *S, Py_ssize_t k) {
    return (entry_t *)(S->e + (size_t)k * S->stride);
}

static int store_ready(const Store *S) {
    if (S->fn != NULL) return 1;
    const kind_t *K = Py_IS_TYPE(S, &CellsType) ? &CELLS : &SKU_HOURS;
    PyErr_Format(PyExc_TypeError, "%s: made without its %s", K->name, K->fn_kw);
    return 0;
}

static int sku_arg(PyObject *sku) {
    if (PyUnicode_CheckExact(sku)) return 1;
    PyErr_SetString(PyExc_TypeError, "SkuHours: the SKU must be a str");
    return 0;
}

/* key is a cell key (an exact tuple of two ints and five exact strs): 1, or 0 with a
 * TypeError */
static int cells_key_arg(PyObject *key) {
    if (PyTuple_CheckExact(key) && PyTuple_GET_SIZE(key) == 7 &&
        PyLong_CheckExact(PyTuple_GET_ITEM(key, 0)) && PyLong_CheckExact(PyTuple_GET_ITEM(key, 1))) {
        int ok = 1;
        for (Py_ssize_t j = 2; j < 7 && ok; j++) ok = PyUnicode_CheckExact(PyTuple_GET_ITEM(key, j));
        if (ok) return 1;
    }
    PyErr_SetString(PyExc_TypeError, "Cells: a key is (window_seconds, window_start_s, "
                                     "category, color, size, price_band, region)");
    return 0;
}

/* A key argument read: its Python part (borrowed) into *part and, for a SKU hour, its
 * hour into *at; 1, or 0 with an exception. */
static int store_key_arg(const Store *S, PyObject *key, PyObject **part, int64_t *at) {
    *part = key;
    *at = 0;
    if (!S->kind->sku_hours) return cells_key_arg(key);
    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 2) {
        PyErr_SetString(PyExc_TypeError, "SkuHours: a key is a (sku, hour) tuple");
        return 0;
    }
    *part = PyTuple_GET_ITEM(key, 0);
    return sku_arg(*part) && int_arg(PyTuple_GET_ITEM(key, 1), at);
}

/* a checked key's hash (an exact str or a tuple of ints and strs: it cannot fail and no
 * Python code runs), mixed with the hour for a SKU hour */
static inline uint64_t store_hash(const Store *S, PyObject *part, int64_t at) {
    const uint64_t h = (uint64_t)PyObject_Hash(part);
    return S->kind->sku_hours ? h ^ ((uint64_t)at * 0xC2B2AE3D27D4EB4FULL) : h;
}

static int store_hash_at(const void *store, Py_ssize_t k, uint64_t *h) {
    const entry_t *E = ent(store, k);
    *h = E->hash;
    return E->key != NULL;
}

/* The live entry of a checked key of hash h (store_hash), or -1. No Python code runs.
 * A SKU hour's hash mixes in the hour by an odd (so invertible) multiplier: one SKU at two
 * hours never has the same hash, so an entry of hash h and that SKU is of that hour. */
static Py_ssize_t store_find(const Store *S, PyObject *part, uint64_t h) {
    if (S->table.slots == NULL) return -1;
    const size_t mask = it_mask(&S->table);
    for (size_t i = it_home(S->table.bits, h);; i = (i + 1) & mask) {
        const Py_ssize_t k = S->table.slots[i];
        if (k < 0) return -1;
        const entry_t *E = ent(S, k);
        if (E->hash == h &&
            (E->key == part || PyObject_RichCompareBool(E->key, part, Py_EQ) == 1))
            return k;
    }
}

/* The live entry of a key argument, or -1 (no exception: not held; with one: a bad key). */
static Py_ssize_t store_find_key(const Store *S, PyObject *key) {
    PyObject *part;
    int64_t at;
    if (!store_key_arg(S, key, &part, &at)) return -1;
    return store_find(S, part, store_hash(S, part, at));
}

/* room for one more in heap H: 0, or -1 and MemoryError */
static int cheap_room(cheap_t *H) {
    if (H->n < H->cap) return 0;
    cend_t *a = grown(H->a, &H->cap, sizeof *a, 256);
    if (a == NULL) return -1;
    H->a = a;
    return 0;
}

/* (end, k) into heap H, which has room */
static void cheap_push(cheap_t *H, int64_t end, Py_ssize_t k) {
    Py_ssize_t i = H->n++;
    while (i > 0) {
        const Py_ssize_t up = (i - 1) / 2;
        if (H->a[up].end <= end) break;
        H->a[i] = H->a[up];
        i = up;
    }
    H->a[i] = (cend_t){end, k};
}

static cend_t cheap_pop(cheap_t *H) {
    const cend_t top = H->a[0], last = H->a[--H->n];
    Py_ssize_t i = 0;
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= H->n) break;
        if (c + 1 < H->n && H->a[c + 1].end < H->a[c].end) c++;
        if (last.end <= H->a[c].end) break;
        H->a[i] = H->a[c];
        i = c;
    }
    if (H->n > 0) H->a[i] = last;
    return top;
}

/* mark entry k: 0, or -1 and MemoryError */
static int store_mark(Store *S, Py_ssize_t k) {
    marks_t *M = &S->marks;
    if (ent(S, k)->dirty) return 0;
    if (M->n == M->cap) {
        Py_ssize_t *a = grown(M->a, &M->cap, sizeof *a, 64);
        if (a == NULL) return -1;
        M->a = a;
    }
    M->a[M->n++] = k;
    ent(S, k)->dirty = 1;
    return 0;
}

/* The entry of a checked key at `at` (a SKU's hour, a cell's window end), made when new
 * (zero; a SKU hour without a count) and marked when `mark`. Its index, or -1 with an
 * exception. */
static Py_ssize_t store_entry(Store *S, PyObject *part, int64_t at, int mark) {
    const uint64_t h = store_hash(S, part, at);
    Py_ssize_t k = store_find(S, part, h);
    if (k < 0) {
        /* an hour's end (one that ends after INT64_MAX is never evicted: in no heap), a
         * window's end */
        const int endless = S->kind->sku_hours && at > INT64_MAX - HOUR_S;
        int64_t end = S->kind->sku_hours && !endless ? at + HOUR_S : at, size = 0;
        if (!S->kind->sku_hours && !int_arg(PyTuple_GET_ITEM(part, 0), &size)) return -1;
        cheap_t *H = endless ? NULL : &S->ends[size >= HOUR_S];
        if (it_reserve(&S->table, S->live, S->ne, S, store_hash_at) < 0 ||
            (H != NULL && cheap_room(H) < 0))
            return -1; /* (room first: nothing can fail once the entry is made) */
        if (S->free_head < 0 && S->ne == S->ecap) {
            if (S->ne >= INT32_MAX) {
                PyErr_Format(PyExc_OverflowError, "%s: too many entries", S->kind->name);
                return -1;
            }
            char *e = grown(S->e, &S->ecap, S->stride, 256);
            if (e == NULL) return -1;
            S->e = e;
        }
        k = S->free_head >= 0 ? S->free_head : S->ne;
        if (k == S->ne) S->ne++;
        else S->free_head = ent(S, k)->next_free;
        entry_t *E = ent(S, k);
        memset(E, 0, S->stride);
        E->key = Py_NewRef(part);
        E->hash = h;
        E->at = at;
        E->next_free = -1;
        if (S->kind->sku_hours) E->v[SKU_COUNT_TS] = -1;
        it_insert(&S->table, k, h);
        S->live++;
        if (H != NULL) cheap_push(H, end, k);
    }
    if (mark && store_mark(S, k) < 0) return -1;
    return k;
}

/* A handle argument: its entry's index, or -1 with an exception. */
static Py_ssize_t store_handle_arg(const Store *S, PyObject *arg) {
    if (!PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "%s: a handle is an int", S->kind->name);
        return -1;
    }
    const long long v = PyLong_AsLongLong(arg);
    if (v == -1 && PyErr_Occurred()) return -1;
    const long long k = v & (((long long)1 << HANDLE_BITS) - 1);
    if (v < 0 || (v >> HANDLE_BITS) != (S->cuts & 0x7fffffffLL) || k >= S->ne ||
        ent(S, k)->key == NULL) {
        PyErr_Format(PyExc_KeyError, "%s: not a live handle (cut since?)", S->kind->name);
        return -1;
    }
    return (Py_ssize_t)k;
}

/* the handle of entry k (a new reference) */
static PyObject *store_handle_of(const Store *S, Py_ssize_t k) {
    return PyLong_FromLongLong(((S->cuts & 0x7fffffffLL) << HANDLE_BITS) | (long long)k);
}

static int store_add(Store *S, Py_ssize_t k, int slot, int64_t n) {
    int64_t *c = &ent(S, k)->v[slot];
    int64_t sum;
    if (__builtin_add_overflow(*c, n, &sum)) { /* (the counter unchanged) */
        PyErr_Format(PyExc_OverflowError, "%s: a counter beyond 64 bits", S->kind->name);
        return -1;
    }
    *c = sum;
    return 0;
}

/* Entry k is still live after Python code may have run: 1, or 0 with a RuntimeError. */
static int store_still(const Store *S, Py_ssize_t k) {
    if (k < S->ne && ent(S, k)->key != NULL) return 1;
    PyErr_Format(PyExc_RuntimeError, "%s: changed while it was being read", S->kind->name);
    return 0;
}

/* a key, a new reference, from the parts read out of its entry (part held by the
 * caller): the cell's, or (sku, hour) made */
static PyObject *key_from(const Store *S, PyObject *part, int64_t at) {
    if (!S->kind->sku_hours) return Py_NewRef(part);
    PyObject *hour = PyLong_FromLongLong(at);
    PyObject *key = hour == NULL ? NULL : untracked(PyTuple_Pack(2, part, hour));
    Py_XDECREF(hour);
    return key;
}

/* entry k's key, a new reference */
static PyObject *store_key(const Store *S, Py_ssize_t k) {
    PyObject *part = Py_NewRef(ent(S, k)->key);
    PyObject *key = key_from(S, part, ent(S, k)->at); /* (at read before anything is made) */
    Py_DECREF(part);
    return key;
}

/* entry k's counters as a list, copied out first */
static PyObject *store_vector(const Store *S, Py_ssize_t k) {
    uint64_t c[MAX_SLOTS];
    memcpy(c, ent(S, k)->v, (size_t)S->kind->nv * sizeof *c);
    return ints_list(c, S->kind->nv, 1);
}

/* The keys of the first n marks, in the order marked (n read before anything is made). */
static PyObject *marks_keys(const Store *S, Py_ssize_t n) {
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *key = NULL;
        if (i >= S->marks.n)
            PyErr_Format(PyExc_RuntimeError, "%s: changed while it was being read", S->kind->name);
        else if (store_still(S, S->marks.a[i])) key = store_key(S, S->marks.a[i]);
        if (key == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, key);
    }
    return out;
}

/* keys as live entries: a PyMem array of their indices (n in *n), or NULL with an
 * exception (KeyError for a key not held). No Python code runs after it returns. */
static Py_ssize_t *entries_of(const Store *S, PyObject *keys, const char *what, Py_ssize_t *n) {
    PyObject *seq = PySequence_Fast(keys, what);
    if (seq == NULL) return NULL;
    *n = PySequence_Fast_GET_SIZE(seq);
    Py_ssize_t *ks = PyMem_Malloc((size_t)(*n ? *n : 1) * sizeof(Py_ssize_t));
    if (ks == NULL) PyErr_NoMemory();
    for (Py_ssize_t i = 0; ks != NULL && i < *n; i++) {
        PyObject *key = PySequence_Fast_GET_ITEM(seq, i);
        ks[i] = store_find_key(S, key);
        if (ks[i] >= 0) continue;
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
        PyMem_Free(ks);
        ks = NULL;
    }
    Py_DECREF(seq);
    return ks;
}

/* A flush row (topic, partition, *keys, *c, version): a new tuple, or NULL. The caller
 * read c out of its entry first (making the row's ints may run Python code). */
static PyObject *flush_row(PyObject *topic, PyObject *partition, PyObject *const *keys,
                           Py_ssize_t nk, const int64_t *c, Py_ssize_t nc, PyObject *version) {
    PyObject *row = untracked(PyTuple_New(3 + nk + nc));
    if (row == NULL) return NULL;
    for (Py_ssize_t j = 0; j < nc; j++) { /* (a slot left NULL is freed with the tuple) */
        PyObject *x = PyLong_FromLongLong(c[j]);
        if (x == NULL) {
            Py_DECREF(row);
            return NULL;
        }
        PyTuple_SET_ITEM(row, 2 + nk + j, x);
    }
    PyTuple_SET_ITEM(row, 0, Py_NewRef(topic));
    PyTuple_SET_ITEM(row, 1, Py_NewRef(partition));
    for (Py_ssize_t j = 0; j < nk; j++) PyTuple_SET_ITEM(row, 2 + j, Py_NewRef(keys[j]));
    PyTuple_SET_ITEM(row, 2 + nk + nc, Py_NewRef(version));
    return row;
}

/* entry k's flush row: (topic, partition, sku, hour, *counters, version) or (topic,
 * partition, *key, *counters, version); args are rows' */
static PyObject *store_row(const Store *S, Py_ssize_t k, PyObject *const *args) {
    if (!store_still(S, k)) return NULL;
    const entry_t *E = ent(S, k); /* read out first */
    const Py_ssize_t nv = S->kind->nv;
    PyObject *key = Py_NewRef(E->key);
    int64_t c[1 + MAX_SLOTS];
    c[0] = E->at;
    memcpy(c + 1, E->v, (size_t)nv * sizeof *c);
    PyObject *row = S->kind->sku_hours
                        ? flush_row(args[0], args[1], &key, 1, c, 1 + nv, args[3])
                        : flush_row(args[0], args[1], &PyTuple_GET_ITEM(key, 0), 7, c + 1, nv,
                                    args[3]);
    Py_DECREF(key);
    return row;
}

/* drop the unmarked entries whose end is at or before bound[w], of heap w: how many */
static Py_ssize_t store_evict(Store *S, const int64_t bound[2]) {
    Py_ssize_t dropped = 0;
    for (int w = 0; w < 2; w++) {
        cheap_t *H = &S->ends[w];
        cend_t *kept = NULL;
        Py_ssize_t nkept = 0, kcap = 0;
        while (H->n > 0 && H->a[0].end <= bound[w]) {
            const cend_t top = cheap_pop(H);
            entry_t *E = ent(S, top.k);
            if (E->dirty) { /* changed since the cut: kept, to be tried again */
                if (nkept == kcap) {
                    cend_t *a = grown(kept, &kcap, sizeof *a, 64);
                    if (a == NULL) { /* (back in the heap, its room is there; tried again at
                                        the next eviction) */
                        PyErr_Clear();
                        cheap_push(H, top.end, top.k);
                        break;
                    }
                    kept = a;
                }
                kept[nkept++] = top;
                continue;
            }
            it_unlink(&S->table, top.k, E->hash, S, store_hash_at);
            Py_CLEAR(E->key); /* (a str or a tuple of ints and strs: no Python code runs) */
            E->next_free = (int32_t)S->free_head;
            S->free_head = top.k;
            S->live--;
            dropped++;
        }
        for (Py_ssize_t i = 0; i < nkept; i++) cheap_push(H, kept[i].end, kept[i].k);
        PyMem_Free(kept);
    }
    it_shrink(&S->table, S->live, S->ne, S, store_hash_at); /* (a backlog evicted) */
    return dropped;
}

/* a persisted entry (not marked): 0, or -1 with an exception; a new cell's end from
 * end_of(size, start) */
static int store_put(Store *S, PyObject *key, const int64_t *v) {
    PyObject *part;
    int64_t at;
    if (!store_key_arg(S, key, &part, &at)) return -1;
    Py_ssize_t k = store_find(S, part, store_hash(S, part, at));
    if (k < 0 && !S->kind->sku_hours) { /* new: its end first (Python code), then the entry */
        PyObject *end = PyObject_CallFunctionObjArgs(S->fn, PyTuple_GET_ITEM(key, 0),
                                                     PyTuple_GET_ITEM(key, 1), NULL);
        const int ok = end != NULL && int_arg(end, &at);
        Py_XDECREF(end);
        if (!ok) return -1;
    }
    if (k < 0) k = store_entry(S, part, at, 0);
    if (k < 0) return -1;
    memcpy(ent(S, k)->v, v, (size_t)S->kind->nv * sizeof *v);
    return 0;
}

/* A persisted counter vector of n ints into v: 1, or 0 with an exception. */
static int counters_arg(PyObject *seq, int64_t *v, Py_ssize_t n, const char *wrong_size) {
    PyObject *fast = PySequence_Fast(seq, "load: the counters must be a sequence");
    if (fast == NULL) return 0;
    int ok = PySequence_Fast_GET_SIZE(fast) == n;
    if (!ok) PyErr_SetString(PyExc_ValueError, wrong_size);
    for (Py_ssize_t j = 0; ok && j < n; j++) ok = int_arg(PySequence_Fast_GET_ITEM(fast, j), &v[j]);
    Py_DECREF(fast);
    return ok;
}

/* Python's methods. Both types: */

static int Store_traverse(Store *self, visitproc visit, void *arg) {
    Py_VISIT(self->fn);
    return 0; /* (the keys hold ints and strs only) */
}

static int Store_clear(Store *self) {
    Py_CLEAR(self->fn);
    return 0;
}

static void Store_dealloc(Store *self) {
    PyObject_GC_UnTrack(self);
    Store_clear(self);
    for (Py_ssize_t k = 0; k < self->ne; k++) Py_CLEAR(ent(self, k)->key);
    PyMem_Free(self->e);
    PyMem_Free(self->table.slots);
    PyMem_Free(self->marks.a);
    PyMem_Free(self->ends[0].a);
    PyMem_Free(self->ends[1].a);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* __init__(*, hour_of | end_of), once */
static int store_init(Store *self, PyObject *args, PyObject *kwds, const kind_t *K) {
    char *kwlist[] = {(char *)K->fn_kw, NULL};
    PyObject *fn = NULL;
    if (self->fn != NULL) {
        PyErr_Format(PyExc_TypeError, "%s: made once", K->name);
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$O", kwlist, &fn)) return -1;
    if (fn == NULL || !PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "%s: %s, a callable, expected by keyword", K->name, K->fn_kw);
        return -1;
    }
    self->kind = K;
    self->stride = sizeof(entry_t) + (size_t)K->nv * sizeof(int64_t);
    self->free_head = -1;
    self->fn = Py_NewRef(fn);
    return 0;
}

/* add(handle, slot, n) */
static PyObject *Store_add(Store *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!store_ready(self) || !nargs_are(nargs, 3, "add(handle, slot, n)")) return NULL;
    int64_t slot, n;
    if (!int_arg(args[1], &slot) || !int_arg(args[2], &n)) return NULL;
    if (slot < 0 || slot >= self->kind->addable) {
        PyErr_SetString(PyExc_ValueError, self->kind->slot_error);
        return NULL;
    }
    const Py_ssize_t k = store_handle_arg(self, args[0]);
    if (k < 0 || store_add(self, k, (int)slot, n) < 0) return NULL;
    Py_RETURN_NONE;
}

/* key_of(handle) -> key */
static PyObject *Store_key_of(Store *self, PyObject *handle) {
    const Py_ssize_t k = store_ready(self) ? store_handle_arg(self, handle) : -1;
    return k < 0 ? NULL : store_key(self, k);
}

/* cut() -> [key]: the marked keys, in the order marked, the marks cleared and every
 * handle ended */
static PyObject *Store_cut(Store *self, PyObject *unused) {
    if (!store_ready(self)) return NULL;
    const Py_ssize_t n = self->marks.n;
    const long long before = self->cuts;
    PyObject *out = marks_keys(self, n);
    if (out == NULL) return NULL;
    if (self->cuts != before || self->marks.n < n) { /* another cut ran meanwhile */
        Py_DECREF(out);
        PyErr_Format(PyExc_RuntimeError, "%s: cut while it was being cut", self->kind->name);
        return NULL;
    }
    self->cuts++;
    marks_t *M = &self->marks;
    for (Py_ssize_t i = 0; i < n; i++) ent(self, M->a[i])->dirty = 0;
    if (M->n > n) /* (marks added meanwhile stay, in order) */
        memmove(M->a, M->a + n, (size_t)(M->n - n) * sizeof(Py_ssize_t));
    M->n -= n;
    return out;
}

/* marked() -> [key]: the marked keys, in the order marked, the marks kept */
static PyObject *Store_marked(Store *self, PyObject *unused) {
    return store_ready(self) ? marks_keys(self, self->marks.n) : NULL;
}

/* uncut(keys): the write of a cut failed; its keys are marked again (after newer marks) */
static PyObject *Store_uncut(Store *self, PyObject *keys) {
    Py_ssize_t n = 0;
    Py_ssize_t *ks = store_ready(self) ? entries_of(self, keys, "uncut: keys must be iterable", &n)
                                       : NULL;
    if (ks == NULL) return NULL;
    int rc = 0;
    for (Py_ssize_t i = 0; i < n && rc == 0; i++) rc = store_mark(self, ks[i]);
    PyMem_Free(ks);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* rows(topic, partition, keys, version) -> the flush rows of those keys' entries */
static PyObject *Store_rows(Store *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!store_ready(self) || !nargs_are(nargs, 4, "rows(topic, partition, keys, version)"))
        return NULL;
    Py_ssize_t n;
    Py_ssize_t *ks = entries_of(self, args[2], "rows: keys must be iterable", &n);
    if (ks == NULL) return NULL;
    PyObject *rows = PyList_New(n);
    for (Py_ssize_t i = 0; rows != NULL && i < n; i++) {
        PyObject *row = store_row(self, ks[i], args);
        if (row == NULL) Py_CLEAR(rows);
        else PyList_SET_ITEM(rows, i, row);
    }
    PyMem_Free(ks);
    return rows;
}

/* load(pairs): restore persisted (key, counters) pairs (not marked) */
static PyObject *Store_load(Store *self, PyObject *pairs) {
    PyObject *it = store_ready(self) ? PyObject_GetIter(pairs) : NULL;
    if (it == NULL) return NULL;
    PyObject *pair;
    int64_t v[MAX_SLOTS];
    while ((pair = PyIter_Next(it)) != NULL) {
        int ok = PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2;
        if (!ok) PyErr_SetString(PyExc_TypeError, self->kind->pair_error);
        ok = ok && counters_arg(PyTuple_GET_ITEM(pair, 1), v, self->kind->nv,
                                self->kind->size_error) &&
             store_put(self, PyTuple_GET_ITEM(pair, 0), v) == 0;
        Py_DECREF(pair);
        if (!ok) {
            Py_DECREF(it);
            return NULL;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* snapshot() -> {key: counters} */
static PyObject *Store_snapshot(Store *self, PyObject *unused) {
    PyObject *out = store_ready(self) ? PyDict_New() : NULL;
    for (Py_ssize_t k = 0; out != NULL && k < self->ne; k++) {
        const entry_t *E = ent(self, k);
        if (E->key == NULL) continue;
        PyObject *part = Py_NewRef(E->key); /* the entry read out before anything is made */
        const int64_t at = E->at;
        uint64_t c[MAX_SLOTS];
        memcpy(c, E->v, (size_t)self->kind->nv * sizeof *c);
        PyObject *key = key_from(self, part, at);
        Py_DECREF(part);
        PyObject *v = key == NULL ? NULL : ints_list(c, self->kind->nv, 1);
        if (v == NULL || PyDict_SetItem(out, key, v) < 0) Py_CLEAR(out);
        Py_XDECREF(key);
        Py_XDECREF(v);
    }
    return out;
}

/* evict(*bounds) -> int: drop the unmarked entries that ended at or before their bound
 * (SkuHours' evict(keep_from_s), Cells' evict(short_s, long_s)) */
static PyObject *Store_evict(Store *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t bound[2] = {0, INT64_MIN};
    if (!store_ready(self) || !nargs_are(nargs, 2 - self->kind->sku_hours, self->kind->evict_usage))
        return NULL;
    for (Py_ssize_t i = 0; i < nargs; i++)
        if (!int_arg(args[i], &bound[i])) return NULL;
    return PyLong_FromSsize_t(store_evict(self, bound));
}

static Py_ssize_t Store_len(Store *self) { return self->live; }

static PyObject *Store_pending(Store *self, void *closure) {
    return PyLong_FromSsize_t(self->marks.n);
}

static PyObject *Store_sizeof(Store *self, PyObject *unused) {
    size_t n = sizeof(Store) + (size_t)self->ecap * self->stride +
               (size_t)self->marks.cap * sizeof(Py_ssize_t) +
               (size_t)(self->ends[0].cap + self->ends[1].cap) * sizeof(cend_t);
    return PyLong_FromSize_t(n + it_sizeof(&self->table));
}

/* The methods both types have; `what` names their entries, `key` a key, in the docs. */
#define STORE_METHODS(what, key, evict_doc)                                                 \
    {"evict", (PyCFunction)(void (*)(void))Store_evict, METH_FASTCALL, evict_doc},          \
    {"add", (PyCFunction)(void (*)(void))Store_add, METH_FASTCALL,                          \
     "add(handle, slot, n): counter slot of the handle's " what " += n."},                   \
    {"key_of", (PyCFunction)Store_key_of, METH_O, "key_of(handle) -> " key "."},             \
    {"cut", (PyCFunction)Store_cut, METH_NOARGS,                                            \
     "cut() -> [" key "]: take the marks (the " what "s changed since the last cut)."},     \
    {"uncut", (PyCFunction)Store_uncut, METH_O,                                             \
     "uncut(keys): the write of a cut failed: its " what "s are marked again."},            \
    {"marked", (PyCFunction)Store_marked, METH_NOARGS,                                      \
     "marked() -> [" key "]: the " what "s changed since the last cut, in order."},         \
    {"rows", (PyCFunction)(void (*)(void))Store_rows, METH_FASTCALL,                        \
     "rows(topic, partition, keys, version) -> the flush rows of those " what "s."},        \
    {"load", (PyCFunction)Store_load, METH_O,                                               \
     "load(pairs): restore persisted (" key ", counters) pairs (not marked)."},             \
    {"snapshot", (PyCFunction)Store_snapshot, METH_NOARGS,                                  \
     "snapshot() -> {" key ": counters}."},                                                  \
    {"__sizeof__", (PyCFunction)Store_sizeof, METH_NOARGS, NULL}

/* A store type of kind KIND (LANES_STORE_TYPE): its __init__, and its methods: its own
 * (the arguments after doc) and STORE_METHODS (evict_doc: evict's doc). */
#define STORE_TYPE(Name, KIND, what, key, pending_doc, evict_doc, doc, ...)                 \
    static int Name##_init(Store *self, PyObject *args, PyObject *kwds) {                   \
        return store_init(self, args, kwds, &KIND);                                         \
    }                                                                                       \
    static PyMethodDef Name##_methods[] = {__VA_ARGS__, STORE_METHODS(what, key, evict_doc), \
                                           {NULL, NULL, 0, NULL}};                          \
    LANES_STORE_TYPE(Name, Store, pending_doc, doc)

/* SkuHours' own: */

/* The hour of ts_ms (hour_of(ts_ms // 1000)): 1, or 0 with an exception. */
static int skuhours_hour(Store *S, PyObject *ts_ms, int64_t *hour) {
    int64_t ts;
    if (!int_arg(ts_ms, &ts)) return 0;
    PyObject *h = PyObject_CallFunction(S->fn, "L", (long long)floor_div(ts, 1000));
    if (h == NULL) return 0;
    const int ok = int_arg(h, hour);
    Py_DECREF(h);
    return ok;
}

/* handle(sku, ts_ms) -> int */
static PyObject *SkuHours_handle(Store *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t hour = 0;
    Py_ssize_t k = -1;
    if (store_ready(self) && nargs_are(nargs, 2, "handle(sku, ts_ms)") && sku_arg(args[0]) &&
        skuhours_hour(self, args[1], &hour))
        k = store_entry(self, args[0], hour, 1);
    return k < 0 ? NULL : store_handle_of(self, k);
}

/* get(sku, hour) -> list | None */
static PyObject *SkuHours_get(Store *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t hour;
    if (!store_ready(self) || !nargs_are(nargs, 2, "get(sku, hour)") || !sku_arg(args[0]) ||
        !int_arg(args[1], &hour))
        return NULL;
    const Py_ssize_t k = store_find(self, args[0], store_hash(self, args[0], hour));
    return k < 0 ? Py_NewRef(Py_None) : store_vector(self, k);
}

/* stock_count(sku, ts_ms, on_hand): the reference's rule, the latest count of the hour
 * (ties: the larger count) */
static PyObject *SkuHours_stock_count(Store *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!store_ready(self) || !nargs_are(nargs, 3, "stock_count(sku, ts_ms, on_hand)")) return NULL;
    int64_t ts, on_hand, hour;
    if (!sku_arg(args[0]) || !int_arg(args[1], &ts) || !int_arg(args[2], &on_hand) ||
        !skuhours_hour(self, args[1], &hour))
        return NULL;
    const Py_ssize_t k = store_entry(self, args[0], hour, 1);
    if (k < 0) return NULL;
    int64_t *v = ent(self, k)->v;
    if (ts > v[SKU_COUNT_TS] || (ts == v[SKU_COUNT_TS] && on_hand > v[SKU_COUNT_ON_HAND])) {
        v[SKU_COUNT_TS] = ts;
        v[SKU_COUNT_ON_HAND] = on_hand;
    }
    Py_RETURN_NONE;
}

STORE_TYPE(SkuHours, SKU_HOURS, "hour", "(sku, hour)", "hours changed since the last cut",
           "evict(keep_from_s) -> int: drop the clean hours that end at or before keep_from_s.",
           "SkuHours(*, hour_of)\n\nA partition's per-SKU hourly counters, compiled: "
           "streams.core.inventory.SkuHours.",
           {"handle", (PyCFunction)(void (*)(void))SkuHours_handle, METH_FASTCALL,
            "handle(sku, ts_ms) -> int: the hour of (sku, ts_ms), made if new and marked; "
            "its handle stays valid until the next cut."},
           {"stock_count", (PyCFunction)(void (*)(void))SkuHours_stock_count, METH_FASTCALL,
            "stock_count(sku, ts_ms, on_hand): keep the latest count of the hour (ties: "
            "the larger)."},
           {"get", (PyCFunction)(void (*)(void))SkuHours_get, METH_FASTCALL,
            "get(sku, hour) -> counters or None."});

/* Cells' own: */

/* get(key) -> list | None */
static PyObject *Cells_get(Store *self, PyObject *key) {
    if (!store_ready(self) || !cells_key_arg(key)) return NULL;
    const Py_ssize_t k = store_find(self, key, store_hash(self, key, 0));
    return k < 0 ? Py_NewRef(Py_None) : store_vector(self, k);
}

/* handle(key, end_s) -> int */
static PyObject *Cells_handle(Store *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t end = 0;
    const int ok = store_ready(self) && nargs_are(nargs, 2, "handle(key, end_s)") &&
                   cells_key_arg(args[0]) && int_arg(args[1], &end);
    const Py_ssize_t k = ok ? store_entry(self, args[0], end, 1) : -1;
    return k < 0 ? NULL : store_handle_of(self, k);
}

STORE_TYPE(Cells, CELLS, "cell", "key", "cells changed since the last cut",
           "evict(short_s, long_s) -> int: drop the clean cells whose windows ended by then.",
           "Cells(*, end_of)\n\nA partition's cells and their measures, compiled: "
           "streams.core.demand.Cells.",
           {"get", (PyCFunction)Cells_get, METH_O, "get(key) -> counters or None."},
           {"handle", (PyCFunction)(void (*)(void))Cells_handle, METH_FASTCALL,
            "handle(key, end_s) -> int: the cell's entry (made zero if new, its window "
            "ending at end_s) and marked; its handle stays valid until the next cut."});

/* What a run works on, read once per call: the partition's containers (its LaneState),
 * and the Core's settings and caches. */
typedef struct {
    IdSet *dedup;                      /* PartitionState.dedup */
    PyObject *hot_pv, *hot;            /* PartitionState.hot_pv, .hot */
    Cells *cells;                      /* PartitionState.cells */
    CellHashes *visitors;              /* PartitionState.visitors */
    SkuHours *skus;                    /* PartitionState.skus: the SKU hours */
    Versions *catalog;                 /* Catalog.store: the versions by SKU */
    PyObject *generation;              /* Catalog.generation */
    CellHashes *shops;                 /* PartitionState.shops */
    PyObject *unknown;                 /* Core: streams.core.catalog.UNKNOWN */
    PyObject *sizes;                   /* Core: tuple of window sizes (s) */
    PyObject *visitor_sizes;           /* Core: tuple of bools: a base size (visitor hashes) */
    PyObject *grains, *grain_fn;       /* Core: MarketCalendar.grains and .grain */
    caches_t *caches;                  /* Core: its caches */
    int64_t grain_s;
} lane_t;

/* ------------------------------------------------------------------ typed interface */
/* LaneState: the partition's containers a run works on, by name (made by
 * DemandEngine._lane_state with keyword arguments, each checked for its type once, here).
 * Limits: the engine's limits, by name. Core: the compiled core (below). All three are
 * immutable to Python (read-only members). */
#define LANE_STATE_FIELDS(X)                                                                \
    X(dedup, IdSetType) X(hot_pv, PyDict_Type) X(hot, PyDict_Type)                         \
    X(cells, CellsType)                                                                     \
    X(visitors, CellHashesType) X(skus, SkuHoursType)                                          \
    X(catalog, VersionsType) X(generation, PyLong_Type) X(shops, CellHashesType)

typedef struct {
    PyObject_HEAD
#define X(name, type) PyObject *name;
    LANE_STATE_FIELDS(X)
#undef X
    int ready; /* set by __init__: LaneState.__new__ alone leaves the fields NULL */
} LaneState;

static void LaneState_dealloc(LaneState *self) {
#define X(name, type) Py_XDECREF(self->name);
    LANE_STATE_FIELDS(X)
#undef X
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int LaneState_init(LaneState *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {
#define X(name, type) #name,
        LANE_STATE_FIELDS(X)
#undef X
        NULL};
#define X(name, type) PyObject *name = NULL;
    LANE_STATE_FIELDS(X)
#undef X
    if (self->ready) { /* a call borrows its fields: they must not change under it */
        PyErr_SetString(PyExc_TypeError, "LaneState: made once");
        return -1;
    }
#define X(name, type) "O!"
    static const char format[] = "|$" LANE_STATE_FIELDS(X) ":LaneState"; /* one a field */
#undef X
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, format, kwlist,
#define X(name, type) &type, &name,
            LANE_STATE_FIELDS(X)
#undef X
            NULL))
        return -1;
#define X(name, type)                                                                       \
    if (name == NULL) {                                                                     \
        PyErr_SetString(PyExc_TypeError, "LaneState: missing " #name);                      \
        return -1;                                                                          \
    }
    LANE_STATE_FIELDS(X)
#undef X
    if (!idset_ready((IdSet *)dedup) || !versions_ready((Versions *)catalog) ||
        !store_ready((Store *)skus) || !cellhashes_ready((CellHashes *)visitors) ||
        !cellhashes_ready((CellHashes *)shops) || !store_ready((Store *)cells))
        return -1;
#define X(name, type) Py_XSETREF(self->name, Py_NewRef(name));
    LANE_STATE_FIELDS(X)
#undef X
    self->ready = 1;
    return 0;
}

static PyMemberDef LaneState_members[] = {
#define X(name, type) {#name, T_OBJECT_EX, offsetof(LaneState, name), READONLY, NULL},
    LANE_STATE_FIELDS(X)
#undef X
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject LaneStateType = {
    LANES_TYPE(LaneState, Py_TPFLAGS_DEFAULT,
               "LaneState(*, dedup, hot_pv, hot, cells, visitors, skus, catalog,\n"
               "          generation, shops)\n\n"
               "The partition's containers a lane works on (DemandEngine._lane_state)."),
    .tp_dealloc = (destructor)LaneState_dealloc,
    .tp_members = LaneState_members,
};


#define LIMIT_FIELDS(X)                                                                     \
    X(grain_s) X(lateness_ms) X(horizon_ms) X(max_future_ms) X(max_past_ms)    \
    X(max_bytes)

typedef struct {
    PyObject_HEAD
#define X(name) long long name;
    LIMIT_FIELDS(X)
#undef X
    int ready; /* set by __init__ (Limits.__new__ alone leaves zeros) */
} Limits;

static int Limits_init(Limits *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {
#define X(name) #name,
        LIMIT_FIELDS(X)
#undef X
        NULL};
#define X(name) long long name = -1;
    LIMIT_FIELDS(X)
#undef X
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$LLLLLL:Limits", kwlist,
#define X(name) &name,
                                     LIMIT_FIELDS(X)
#undef X
                                     NULL))
        return -1;
#define X(name)                                                                             \
    if (name < 0) {                                                                         \
        PyErr_SetString(PyExc_ValueError, "Limits: " #name " missing or negative");         \
        return -1;                                                                          \
    }
    LIMIT_FIELDS(X)
#undef X
    if (grain_s == 0 || 3600 % grain_s != 0) {
        PyErr_SetString(PyExc_ValueError, "Limits: a grain_s that divides an hour expected");
        return -1;
    }
#define X(name) self->name = name;
    LIMIT_FIELDS(X)
#undef X
    self->ready = 1;
    return 0;
}

static PyMemberDef Limits_members[] = {
#define X(name) {#name, T_LONGLONG, offsetof(Limits, name), READONLY, NULL},
    LIMIT_FIELDS(X)
#undef X
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject LimitsType = {
    LANES_TYPE(Limits, Py_TPFLAGS_DEFAULT,
               "Limits(*, grain_s, lateness_ms, horizon_ms, max_future_ms, max_past_ms,\n"
               "       max_bytes)\n\n"
               "The engine's limits a lane applies (DemandEngine: its EngineConfig)."),
    .tp_members = Limits_members,
};

/* Core: the compiled core of one engine. It owns what the lanes keep between calls (the
 * visitor-hash, string and lane-entry caches: nothing mutable at module level) and the
 * engine's settings they apply (window sizes, the calendar's grains, the limits), fixed
 * when it is made; its methods (the lanes, hot_entry) take a partition's LaneState. */
typedef struct {
    PyObject_HEAD
    PyObject *sizes, *visitor_sizes, *grains, *grain_fn, *unknown;
    Limits *limits;
    caches_t *caches; /* NULL until __init__ (Core.__new__ alone is refused) */
} Core;

static void Core_dealloc(Core *self) {
    Py_XDECREF(self->sizes);
    Py_XDECREF(self->visitor_sizes);
    Py_XDECREF(self->grains);
    Py_XDECREF(self->grain_fn);
    Py_XDECREF(self->unknown);
    Py_XDECREF(self->limits);
    caches_free(self->caches);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Core_init(Core *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"sizes", "visitor_sizes", "grains", "grain_fn", "unknown",
                             "limits", NULL};
    PyObject *sizes = NULL, *visitor_sizes = NULL, *grains = NULL, *grain_fn = NULL,
             *unknown = NULL, *limits = NULL;
    if (self->caches != NULL) {
        PyErr_SetString(PyExc_TypeError, "Core: made once (its settings are fixed)");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$O!O!O!OOO!:Core", kwlist, &PyTuple_Type,
                                     &sizes, &PyTuple_Type, &visitor_sizes, &PyDict_Type,
                                     &grains, &grain_fn, &unknown, &LimitsType, &limits))
        return -1;
    if (sizes == NULL || visitor_sizes == NULL || grains == NULL || grain_fn == NULL ||
        unknown == NULL || limits == NULL) {
        PyErr_SetString(PyExc_TypeError, "Core: sizes, visitor_sizes, grains, grain_fn, "
                                         "unknown and limits are required (by keyword)");
        return -1;
    }
    if (!PyCallable_Check(grain_fn)) {
        PyErr_SetString(PyExc_TypeError, "Core: grain_fn must be callable");
        return -1;
    }
    const Py_ssize_t ns = PyTuple_GET_SIZE(sizes);
    if (ns == 0 || ns > 8 || ns != PyTuple_GET_SIZE(visitor_sizes)) {
        PyErr_SetString(PyExc_ValueError,
                        "Core: 1 to 8 sizes expected, and a visitor_sizes flag for each");
        return -1;
    }
    for (Py_ssize_t k = 0; k < ns; k++) {
        PyObject *f = PyTuple_GET_ITEM(visitor_sizes, k);
        if (!PyLong_CheckExact(PyTuple_GET_ITEM(sizes, k)) || (f != Py_True && f != Py_False)) {
            PyErr_SetString(PyExc_TypeError, "Core: sizes are ints, visitor_sizes bools");
            return -1;
        }
    }
    if (!((Limits *)limits)->ready) {
        PyErr_SetString(PyExc_TypeError, "Core: limits made without their fields");
        return -1;
    }
    self->caches = PyMem_Calloc(1, sizeof(caches_t));
    if (self->caches == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->sizes = Py_NewRef(sizes);
    self->visitor_sizes = Py_NewRef(visitor_sizes);
    self->grains = Py_NewRef(grains);
    self->grain_fn = Py_NewRef(grain_fn);
    self->unknown = Py_NewRef(unknown);
    self->limits = (Limits *)Py_NewRef(limits);
    return 0;
}

static PyMemberDef Core_members[] = {
    {"sizes", T_OBJECT_EX, offsetof(Core, sizes), READONLY, NULL},
    {"visitor_sizes", T_OBJECT_EX, offsetof(Core, visitor_sizes), READONLY, NULL},
    {"grains", T_OBJECT_EX, offsetof(Core, grains), READONLY, NULL},
    {"grain_fn", T_OBJECT_EX, offsetof(Core, grain_fn), READONLY, NULL},
    {"unknown", T_OBJECT_EX, offsetof(Core, unknown), READONLY, NULL},
    {"limits", T_OBJECT_EX, offsetof(Core, limits), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

/* L for one call of the core on a partition's state (both checked by the caller). */
static void lane_from(const Core *C, const LaneState *S, lane_t *L) {
    *L = (lane_t){(IdSet *)S->dedup, S->hot_pv, S->hot, (Cells *)S->cells,
                  (CellHashes *)S->visitors, (SkuHours *)S->skus, (Versions *)S->catalog,
                  S->generation, (CellHashes *)S->shops, C->unknown, C->sizes, C->visitor_sizes, C->grains, C->grain_fn,
                  C->caches, C->limits->grain_s};
}

static int core_ready(PyObject *self, const char *what) {
    if (((Core *)self)->caches != NULL) return 1;
    PyErr_Format(PyExc_TypeError, "%s: the Core was not made with its settings", what);
    return 0;
}

/* MarketCalendar.grain(grain): (hour start, then start and end of the window of each size),
 * from its cache or computed by it. A new reference, or NULL. */
static PyObject *grain_bounds(lane_t *L, PyObject *grain) {
    PyObject *b = PyDict_GetItemWithError(L->grains, grain);
    if (b != NULL) Py_INCREF(b);
    else if (!PyErr_Occurred()) b = PyObject_CallOneArg(L->grain_fn, grain);
    if (b != NULL &&
        (!PyTuple_Check(b) || PyTuple_GET_SIZE(b) != 1 + 2 * PyTuple_GET_SIZE(L->sizes))) {
        PyErr_SetString(PyExc_TypeError, "compiled lane: bad calendar grain");
        Py_CLEAR(b);
    }
    return b;
}

/* The hot-path cache entries, by name (struct sequences): made here and by the engine's
 * Python paths alike (streams.core.demand re-exports them), read here by the field
 * indices below. A HotEntry per (category, color, size, price band, region, grain) in
 * PartitionState.hot; a PageViewEntry per (sku, region, grain) in PartitionState.hot_pv.
 * Both live until the next cut, which ends their handles. */
static PyStructSequence_Field HotEntry_fields[] = {
    {"cells", "the handles (Cells) of the cell of every window size"},
    {"visitors", "the handles of the base sizes' cells in the visitor hashes (CellHashes)"},
    {"shops", "the handles of the base sizes' cells in the shop tags (CellHashes)"},
    {NULL, NULL},
};
enum { HOT_CELLS, HOT_VISITORS, HOT_SHOPS, HOT_FIELDS };

static PyStructSequence_Desc HotEntry_desc = {
    "streams.core._lanes.HotEntry",
    "HotEntry((cells, visitors, shops)): the cells of every window size of one\n"
    "(category, color, size, price band, region, time grain), cached until the next cut.",
    HotEntry_fields, HOT_FIELDS,
};

static PyTypeObject HotEntryType;

static PyStructSequence_Field PageViewEntry_fields[] = {
    {"generation", "the catalog generation it was built at (stale once the catalog moves)"},
    {"unknown_sku", "the catalog does not know the SKU (its cells are the unknown product's)"},
    {"sku_hour", "the handle of the SKU's hour (SkuHours.handle)"},
    {"cells", "the HotEntry's cell handles"},
    {"visitors", "the HotEntry's visitor handles"},
    {"shops", "the HotEntry's shop handles"},
    {NULL, NULL},
};
enum { PV_GENERATION, PV_UNKNOWN_SKU, PV_SKU_HOUR, PV_CELLS, PV_VISITORS, PV_SHOPS, PV_FIELDS };

static PyStructSequence_Desc PageViewEntry_desc = {
    "streams.core._lanes.PageViewEntry",
    "PageViewEntry((generation, unknown_sku, sku_hour, cells, visitors, shops)): the\n"
    "page-view lane's entry of one (sku, region, time grain): its SKU hour and its cells.",
    PageViewEntry_fields, PV_FIELDS,
};

static PyTypeObject PageViewEntryType;

/* A new record of type t with the n items (new references taken), untracked by the
 * collector (its items make no cycle); NULL on error. */
static PyObject *record(PyTypeObject *t, PyObject *const *items, Py_ssize_t n) {
    PyObject *o = PyStructSequence_New(t);
    if (o == NULL) return NULL;
    for (Py_ssize_t k = 0; k < n; k++) PyStructSequence_SET_ITEM(o, k, Py_NewRef(items[k]));
    return untracked(o);
}

/* PartitionState.hot_entry for hk = (category, color, size, band, region, grain): the
 * handles (marked) of the cells of every size at ts_s and the visitor and shop handles
 * of the base sizes, cached in hot; ``bounds`` is MarketCalendar.grain of the grain. A new
 * reference, or NULL. */
static PyObject *hot_entry(lane_t *L, PyObject *hk, PyObject *const dims[5], PyObject *bounds) {
    const Py_ssize_t ns = PyTuple_GET_SIZE(L->sizes);
    PyObject *vecs = untracked(PyTuple_New(ns));
    Py_ssize_t nv = 0;
    for (Py_ssize_t k = 0; k < ns; k++) nv += PyTuple_GET_ITEM(L->visitor_sizes, k) == Py_True;
    PyObject *sets = untracked(PyTuple_New(nv));
    PyObject *shop_sets = untracked(PyTuple_New(nv));
    if (vecs == NULL || sets == NULL || shop_sets == NULL) goto fail;
    for (Py_ssize_t k = 0, kv = 0; k < ns; k++) {
        PyObject *size = PyTuple_GET_ITEM(L->sizes, k); /* (an int: Core checked) */
        PyObject *st = PyTuple_GET_ITEM(bounds, 1 + 2 * k);
        PyObject *key =
            untracked(PyTuple_Pack(7, size, st, dims[0], dims[1], dims[2], dims[3], dims[4]));
        if (key == NULL) goto fail;
        int64_t end;
        const Py_ssize_t ck = cells_key_arg(key) && !as_i64(PyTuple_GET_ITEM(bounds, 2 + 2 * k),
                                                            "a window end", &end)
                                  ? store_entry(L->cells, key, end, 1) : -1;
        PyObject *ch = ck < 0 ? NULL : store_handle_of(L->cells, ck);
        if (ch == NULL) { Py_DECREF(key); goto fail; }
        PyTuple_SET_ITEM(vecs, k, ch);
        if (PyTuple_GET_ITEM(L->visitor_sizes, k) == Py_True) { /* their handles */
            const Py_ssize_t vk = cellhashes_entry(L->visitors, key);
            PyObject *vs = vk < 0 ? NULL : cellhashes_handle_of(L->visitors, vk);
            if (vs == NULL) { Py_DECREF(key); goto fail; }
            PyTuple_SET_ITEM(sets, kv, vs);
            const Py_ssize_t sk = cellhashes_entry(L->shops, key);
            PyObject *ss = sk < 0 ? NULL : cellhashes_handle_of(L->shops, sk);
            if (ss == NULL) { Py_DECREF(key); goto fail; }
            PyTuple_SET_ITEM(shop_sets, kv++, ss);
        }
        Py_DECREF(key);
    }
    PyObject *const fields[HOT_FIELDS] = {vecs, sets, shop_sets};
    PyObject *entry = record(&HotEntryType, fields, HOT_FIELDS);
    Py_DECREF(vecs);
    Py_DECREF(sets);
    Py_DECREF(shop_sets);
    if (entry == NULL || PyDict_SetItem(L->hot, hk, entry) < 0) {
        Py_XDECREF(entry);
        return NULL;
    }
    return entry;
fail:
    Py_XDECREF(vecs);
    Py_XDECREF(sets);
    Py_XDECREF(shop_sets);
    return NULL;
}

/* The shop of an event into the shop tags of its cells (streams.core.kanon.shop_tag: the
 * shop id's BLAKE2b-64 with its two lowest bits the family: 0 an order, 1 a page view, 2 a
 * cancel or return). 0, or -1 on error. */
static int add_shop(lane_t *L, PyObject *shop_sets, const span *shop_id, int family) {
    if (!PyTuple_Check(shop_sets)) {
        PyErr_SetString(PyExc_TypeError, "compiled lane: bad shop handles");
        return -1;
    }
    if (PyTuple_GET_SIZE(shop_sets) == 0) return 0;
    const uint64_t h = (visitor_hash(L->caches, shop_id->p, shop_id->n) & ~(uint64_t)3) | (uint64_t)family;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(shop_sets); k++) {
        const Py_ssize_t sk = cellhashes_handle_arg(L->shops, PyTuple_GET_ITEM(shop_sets, k));
        if (sk < 0 || cellhashes_add(L->shops, sk, h) < 0) return -1;
    }
    return 0;
}

/* measure slot of the cell a handle names += n. 0, or -1 on error. */
static int lane_cell_add(lane_t *L, PyObject *handle, int slot, int64_t n) {
    const Py_ssize_t ck = store_handle_arg(L->cells, handle);
    return ck < 0 ? -1 : store_add(L->cells, ck, slot, n);
}

/* DemandEngine._pv_entry: the lane entry of (sku, region, grain of ts), stored in hot_pv
 * under key; Py_None when a catalog version starts inside the grain. New reference. */
static PyObject *pv_entry(lane_t *L, PyObject *key, PyObject *sku, PyObject *region, int64_t ts) {
    const int64_t grain_ms = L->grain_s * 1000;
    const int64_t first = ts - ts % grain_ms;
    PyObject *a = versions_span(L->catalog, sku, first, first + grain_ms - 1);
    if (a == NULL) return NULL;
    if (a == Py_False) {
        Py_DECREF(a);
        return Py_NewRef(Py_None);
    }
    const int unknown = a == Py_None;
    PyObject *dims[5] = {NULL, NULL, NULL, NULL, region};
    PyObject *names[4] = {S_category, S_color, S_size, S_price_band};
    PyObject *hk = NULL, *he = NULL, *svec = NULL, *bounds = NULL, *entry = NULL;
    PyObject *grain = NULL;
    int ok = 0;
    for (int k = 0; k < 4; k++) {
        dims[k] = unknown ? Py_NewRef(L->unknown) : PyObject_GetAttr(a, names[k]);
        if (dims[k] == NULL) goto done;
    }
    const int64_t ts_s = ts / 1000;
    grain = PyLong_FromLongLong(ts_s / L->grain_s);
    if (grain == NULL) goto done;
    bounds = grain_bounds(L, grain);
    if (bounds == NULL) goto done;
    hk = untracked(PyTuple_Pack(6, dims[0], dims[1], dims[2], dims[3], region, grain));
    if (hk == NULL) goto done;
    he = PyDict_GetItemWithError(L->hot, hk);
    if (he != NULL) {
        Py_INCREF(he);
    } else {
        if (PyErr_Occurred()) goto done;
        he = hot_entry(L, hk, dims, bounds);
        if (he == NULL) goto done;
    }
    if (!Py_IS_TYPE(he, &HotEntryType)) {
        PyErr_SetString(PyExc_TypeError, "page-view lane: a hot entry is not a HotEntry");
        goto done;
    }
    const int64_t hour_s = PyLong_AsLongLong(PyTuple_GET_ITEM(bounds, 0)); /* the SKU hour */
    if (hour_s == -1 && PyErr_Occurred()) goto done;
    const Py_ssize_t sk = store_entry(L->skus, sku, hour_s, 1);
    svec = sk < 0 ? NULL : store_handle_of(L->skus, sk);
    if (svec == NULL) goto done;
    PyObject *const fields[PV_FIELDS] = {
        L->generation, unknown ? Py_True : Py_False, svec,
        PyStructSequence_GET_ITEM(he, HOT_CELLS), PyStructSequence_GET_ITEM(he, HOT_VISITORS),
        PyStructSequence_GET_ITEM(he, HOT_SHOPS)};
    entry = record(&PageViewEntryType, fields, PV_FIELDS);
    if (entry == NULL || PyDict_SetItem(L->hot_pv, key, entry) < 0) goto done;
    ok = 1;
done:
    for (int k = 0; k < 4; k++) Py_XDECREF(dims[k]);
    Py_DECREF(a);
    Py_XDECREF(grain);
    Py_XDECREF(hk);
    Py_XDECREF(he);
    Py_XDECREF(bounds);
    Py_XDECREF(svec);
    if (!ok) {
        Py_XDECREF(entry);
        return NULL;
    }
    return entry;
}

/* The limits and running counts of one call. */
typedef struct {
    int64_t lateness, horizon, max_future, max_past, max_bytes, max_ts;
    int has_max;
    Py_ssize_t start, consumed, processed, dups, corrected, unknown;
} run_t;

/* core.<lane>(state, run, start, max_ts) -> L, R; 0 and an exception when wrong. */
static int parse_args(const Core *core, const char *name, PyObject *const *args,
                      Py_ssize_t nargs, lane_t *L, run_t *R) {
    if (!core_ready((PyObject *)core, name)) return 0;
    if (nargs != 4 || !PyObject_TypeCheck(args[0], &LaneStateType) ||
        !((LaneState *)args[0])->ready) {
        PyErr_Format(PyExc_TypeError,
                     "%s(state: LaneState, run, start, max_ts: int | None) expected, the "
                     "LaneState made with its keyword arguments", name);
        return 0;
    }
    lane_from(core, (const LaneState *)args[0], L);
    const Limits *Lim = core->limits;
    memset(R, 0, sizeof *R);
    R->start = PyLong_AsSsize_t(args[2]);
    if (R->start == -1 && PyErr_Occurred()) return 0;
    if (R->start < 0) R->start = 0;
    R->lateness = Lim->lateness_ms;
    R->horizon = Lim->horizon_ms;
    R->max_future = Lim->max_future_ms;
    R->max_past = Lim->max_past_ms;
    R->max_bytes = Lim->max_bytes;
    R->has_max = args[3] != Py_None;
    return !(R->has_max && as_i64(args[3], "max_ts", &R->max_ts));
}

/* The record's value (a new reference) and Kafka timestamp: 1; 0 when Python must handle
 * the record (a tombstone, too large, no timestamp); -1 on error. */
static int record_value(PyObject *rec, const run_t *R, PyObject **value, int64_t *ref) {
    const int rt = record_time(rec, ref);
    if (rt <= 0) return rt;
    *value = PyObject_GetAttr(rec, S_value);
    if (*value == NULL) return -1;
    if (PyBytes_CheckExact(*value) && PyBytes_GET_SIZE(*value) <= R->max_bytes) return 1;
    Py_CLEAR(*value);
    return 0;
}

enum { ADMIT = 1, DUPLICATE = 0, STOP = 2 };

/* The engine's steps 2-4 for a decoded event: future_ts / stale_ts and events behind the
 * watermark by more than the horizon -> STOP (Python's: a rejection, or a duplicate or
 * late event; nothing changed); a repeated id -> DUPLICATE (counted); else ADMIT: the id
 * is recorded and the watermark moved. -1 on error. */
static int admit(lane_t *L, run_t *R, int64_t ref, int64_t ts, const span *id) {
    if (ts > ref + R->max_future || ts < ref - R->max_past ||
        (R->has_max && R->max_ts - R->lateness - ts > R->horizon))
        return STOP;
    const int first = idset_add(L->dedup, blake2b64(id->p, (size_t)id->n), ts);
    if (first < 0) return -1;
    if (!first) {
        R->dups++;
        R->consumed++;
        return DUPLICATE;
    }
    if (R->has_max) {
        if (R->max_ts - R->lateness - ts > 0) R->corrected++;
        if (ts > R->max_ts) R->max_ts = ts;
    } else {
        R->max_ts = ts;
        R->has_max = 1;
    }
    return ADMIT;
}

/* What a lane returns, by name (a struct sequence: read by attribute). */
static PyStructSequence_Field RunResult_fields[] = {
    {"stop", "index of the first record not applied (len(run) when done)"},
    {"status", "DONE, SLOW or APPLY"},
    {"max_ts", "the partition's highest event time after the run (ms), or None"},
    {"consumed", "records consumed in run[start:stop]"},
    {"processed", "events applied in run[start:stop]"},
    {"duplicates", "repeated event ids in run[start:stop]"},
    {"corrected", "events behind the watermark, within the horizon (run[stop] on APPLY)"},
    {"unknown_sku", "order lines of SKUs the catalog does not know"},
    {NULL, NULL},
};

static PyStructSequence_Desc RunResult_desc = {
    "streams.core._lanes.RunResult", "What a lane of the Core returns.", RunResult_fields, 8,
};

static PyTypeObject RunResultType;

static PyObject *result(Py_ssize_t stop, int status, const run_t *R) {
    PyObject *out = PyStructSequence_New(&RunResultType);
    if (out == NULL) return NULL;
    PyObject *v[8] = {
        PyLong_FromSsize_t(stop), PyLong_FromLong(status),
        R->has_max ? PyLong_FromLongLong(R->max_ts) : Py_NewRef(Py_None),
        PyLong_FromSsize_t(R->consumed), PyLong_FromSsize_t(R->processed),
        PyLong_FromSsize_t(R->dups), PyLong_FromSsize_t(R->corrected),
        PyLong_FromSsize_t(R->unknown)};
    int failed = 0;
    for (int k = 0; k < 8; k++) {
        if (v[k] == NULL) failed = 1;
        PyStructSequence_SET_ITEM(out, k, v[k] != NULL ? v[k] : Py_NewRef(Py_None));
    }
    if (failed) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

#define RUN_DOC(name, topic, what)                                                            \
    name "(state: LaneState, run, start, max_ts) -> RunResult(stop, status, max_ts,\n"     \
    "    consumed, processed, duplicates, corrected, unknown_sku)\n\n"                       \
    "Apply run[start:] (" topic " records of one partition, in offset order) until\n"       \
    "the end (status DONE) or the first record Python must handle: SLOW, run[stop]\n"       \
    "untouched; APPLY, run[stop] deduplicated and in the watermark (and in `corrected`)\n" \
    "but not applied and not counted (" what "). The counts are deltas for run[start:stop]."

PyDoc_STRVAR(pageview_run_doc, RUN_DOC("pageview_run", "shop.pageviews",
                                       "a catalog version starts inside its grain"));

/* A page view the lane admitted: its lane entry (from this call's cache, hot_pv, or
 * built), then SKU hour page views, the page views of its cells, the visitor hash into
 * the base sizes' visitor hashes and the shop's view tag. 0 done, APPLY when a catalog
 * version starts inside its grain (Python applies it), -1 on error. */
static int apply_pageview(lane_t *L, run_t *R, const void *event) {
    const pageview *ev = event;
    const int64_t ts = ev->ts;
    const int64_t grain_no = ts / (L->grain_s * 1000);
    PyObject *sku = NULL, *region = NULL, *key = NULL, *e = NULL;
    sku = cached_str(L->caches, ev->sku.p, ev->sku.n);
    region = cached_str(L->caches, ev->region.p, ev->region.n);
    if (sku == NULL || region == NULL) goto error;
    entry_slot *slot = entry_cache_slot(L->caches, sku, region, grain_no);
    if (slot->entry != NULL && slot->sku == sku && slot->region == region &&
        slot->grain == grain_no) {
        e = Py_NewRef(slot->entry); /* seen in this call: hot_pv holds the same entry */
    } else {
        PyObject *grain = PyLong_FromLongLong(grain_no);
        key = grain ? untracked(PyTuple_Pack(3, sku, region, grain)) : NULL;
        Py_XDECREF(grain);
        if (key == NULL) goto error;
        e = PyDict_GetItemWithError(L->hot_pv, key);
        if (e != NULL) {
            Py_INCREF(e);
            if (!Py_IS_TYPE(e, &PageViewEntryType)) {
                PyErr_SetString(PyExc_TypeError,
                                "page-view lane: a hot_pv entry is not a PageViewEntry");
                goto error;
            }
            const int same = PyObject_RichCompareBool(
                PyStructSequence_GET_ITEM(e, PV_GENERATION), L->generation, Py_EQ);
            if (same < 0) goto error;
            if (!same) Py_CLEAR(e);
        } else if (PyErr_Occurred()) {
            goto error;
        }
        if (e == NULL) {
            e = pv_entry(L, key, sku, region, ts);
            if (e == NULL) goto error;
        }
        if (e == Py_None) { /* a catalog version starts inside the grain: Python applies */
            Py_DECREF(e);
            Py_DECREF(sku);
            Py_DECREF(region);
            Py_DECREF(key);
            return APPLY;
        }
        if (PyStructSequence_GET_ITEM(e, PV_GENERATION) == L->generation)
            entry_cache_put(slot, e, sku, region, grain_no);
        Py_CLEAR(key);
    }
    Py_CLEAR(sku);
    Py_CLEAR(region);
    PyObject *vecs = PyStructSequence_GET_ITEM(e, PV_CELLS);
    PyObject *sets = PyStructSequence_GET_ITEM(e, PV_VISITORS);
    PyObject *shop_sets = PyStructSequence_GET_ITEM(e, PV_SHOPS);
    if (!PyTuple_Check(vecs) || !PyTuple_Check(sets) || !PyTuple_Check(shop_sets)) {
        PyErr_SetString(PyExc_TypeError, "page-view lane: bad lane entry");
        goto error;
    }
    if (PyStructSequence_GET_ITEM(e, PV_UNKNOWN_SKU) == Py_True) R->unknown++;
    const Py_ssize_t sk = store_handle_arg(L->skus, PyStructSequence_GET_ITEM(e, PV_SKU_HOUR));
    if (sk < 0 || store_add(L->skus, sk, SKU_PAGEVIEWS, 1) < 0) goto error;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(vecs); k++)
        if (lane_cell_add(L, PyTuple_GET_ITEM(vecs, k), PAGEVIEWS, 1) < 0) goto error;
    if (PyTuple_GET_SIZE(sets)) {
        const uint64_t vh = visitor_hash(L->caches, ev->visitor_id.p, ev->visitor_id.n);
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(sets); k++) {
            const Py_ssize_t vk = cellhashes_handle_arg(L->visitors, PyTuple_GET_ITEM(sets, k));
            if (vk < 0 || cellhashes_add(L->visitors, vk, vh) < 0) goto error;
        }
    }
    if (add_shop(L, shop_sets, &ev->shop_id, 1) < 0) goto error;
    Py_DECREF(e);
    return 0;
error:
    Py_XDECREF(sku);
    Py_XDECREF(region);
    Py_XDECREF(key);
    Py_XDECREF(e);
    return -1;
}

PyDoc_STRVAR(logistics_run_doc, RUN_DOC("logistics_run", "shop.logistics",
                                        "every type but shipped and delivered, which change "
                                        "no counter and are only counted"));

/* Shipped and delivered change no counter (only counted); the other types -> APPLY. */
static int apply_logistics(lane_t *L, run_t *R, const void *event) {
    (void)L;
    (void)R;
    const logistics *ev = event;
    return ev->kind == KIND_SHIPPED || ev->kind == KIND_DELIVERED ? 0 : APPLY;
}

/* Catalog.lookup(sku, ts): a new reference to the ProductAttrs, or Py_None. */
static PyObject *lookup(lane_t *L, PyObject *sku, int64_t ts) {
    const ventry_t *E = versions_entry(L->catalog, sku);
    if (E == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    return Py_NewRef(E->attrs[version_index(E, ts)]);
}

/* DemandEngine._entry(st, attrs or UNKNOWN_PRODUCT, region, ts): the HotEntry (new ref). */
static PyObject *entry_of(lane_t *L, PyObject *attrs, PyObject *region, int64_t ts) {
    PyObject *names[4] = {S_category, S_color, S_size, S_price_band};
    PyObject *dims[5] = {NULL, NULL, NULL, NULL, region};
    PyObject *he = NULL, *hk = NULL, *grain = NULL;
    for (int k = 0; k < 4; k++) {
        dims[k] = attrs == Py_None ? Py_NewRef(L->unknown) : PyObject_GetAttr(attrs, names[k]);
        if (dims[k] == NULL) goto done;
    }
    const int64_t ts_s = ts / 1000;
    grain = PyLong_FromLongLong(ts_s / L->grain_s);
    hk = grain ? untracked(PyTuple_Pack(6, dims[0], dims[1], dims[2], dims[3], region, grain))
               : NULL;
    if (hk == NULL) goto done;
    he = PyDict_GetItemWithError(L->hot, hk);
    if (he != NULL) Py_INCREF(he);
    else if (!PyErr_Occurred()) {
        PyObject *bounds = grain_bounds(L, grain);
        he = bounds ? hot_entry(L, hk, dims, bounds) : NULL;
        Py_XDECREF(bounds);
    }
    if (he != NULL && (!Py_IS_TYPE(he, &HotEntryType) ||
                       !PyTuple_Check(PyStructSequence_GET_ITEM(he, HOT_CELLS)) ||
                       !PyTuple_Check(PyStructSequence_GET_ITEM(he, HOT_SHOPS)))) {
        PyErr_SetString(PyExc_TypeError, "compiled lane: a hot entry is not a HotEntry");
        Py_CLEAR(he);
    }
done:
    for (int k = 0; k < 4; k++) Py_XDECREF(dims[k]);
    Py_XDECREF(grain);
    Py_XDECREF(hk);
    return he;
}

/* DemandEngine._apply for order_placed / order_cancelled. 0, or -1 on error. */
static int apply_order(lane_t *L, run_t *R, const order *ev) {
    const int64_t ts = ev->ts;
    Py_ssize_t touched[MAX_LINES * 8]; /* the cells the order counted in (entries) */
    int ntouched = 0, rc = -1;
    const long long cuts = L->cells->cuts; /* (touched cells are marked: kept until a cut) */
    PyObject *region = cached_str(L->caches, ev->region.p, ev->region.n);
    PyObject *grain = PyLong_FromLongLong(ts / 1000 / L->grain_s);
    PyObject *bounds = grain ? grain_bounds(L, grain) : NULL;
    Py_XDECREF(grain);
    if (region == NULL || bounds == NULL) goto done;
    const int64_t hour_s = PyLong_AsLongLong(PyTuple_GET_ITEM(bounds, 0)); /* the SKU hour */
    if (hour_s == -1 && PyErr_Occurred()) goto done;
    for (int k = 0; k < ev->nlines; k++) {
        const order_line *ln = &ev->lines[k];
        PyObject *sku = cached_str(L->caches, ln->sku.p, ln->sku.n);
        const Py_ssize_t sk = sku ? store_entry(L->skus, sku, hour_s, 1) : -1;
        int ok = sk >= 0;
        if (ok && ev->placed) {
            int first = 1; /* the order counts once per SKU */
            for (int j = 0; j < k && first; j++)
                first = !(ev->lines[j].sku.n == ln->sku.n &&
                          memcmp(ev->lines[j].sku.p, ln->sku.p, (size_t)ln->sku.n) == 0);
            ok = store_add(L->skus, sk, SKU_UNITS, ln->qty) == 0 &&
                 (!first || store_add(L->skus, sk, SKU_ORDERS, 1) == 0);
        } else if (ok) {
            ok = store_add(L->skus, sk, SKU_CANCELLED, ln->qty) == 0;
        }
        PyObject *attrs = ok ? lookup(L, sku, ts) : NULL;
        Py_XDECREF(sku);
        if (attrs == NULL) goto done;
        if (attrs == Py_None) R->unknown++;
        PyObject *he = entry_of(L, attrs, region, ts);
        Py_DECREF(attrs);
        if (he == NULL) goto done;
        if (add_shop(L, PyStructSequence_GET_ITEM(he, HOT_SHOPS), &ev->shop_id,
                     ev->placed ? 0 : 2) < 0) {
            Py_DECREF(he);
            goto done;
        }
        PyObject *vecs = PyStructSequence_GET_ITEM(he, HOT_CELLS);
        for (Py_ssize_t v = 0; ok && v < PyTuple_GET_SIZE(vecs); v++) {
            const Py_ssize_t ck = store_handle_arg(L->cells, PyTuple_GET_ITEM(vecs, v));
            ok = ck >= 0;
            if (ok && ev->placed) {
                ok = store_add(L->cells, ck, UNITS, ln->qty) == 0 &&
                     store_add(L->cells, ck, GMV_E4, ln->gmv_e4) == 0;
                int known = 0;
                for (int t = 0; t < ntouched && !known; t++) known = touched[t] == ck;
                if (!known && ntouched < (int)(sizeof touched / sizeof *touched))
                    touched[ntouched++] = ck;
                else if (!known) { /* more cells than lines x sizes: cannot happen */
                    PyErr_SetString(PyExc_RuntimeError, "compiled lane: too many cells");
                    ok = 0;
                }
            } else if (ok) {
                ok = store_add(L->cells, ck, CANCELLED_UNITS, ln->qty) == 0;
            }
        }
        Py_DECREF(he);
        if (!ok) goto done;
    }
    if (L->cells->cuts != cuts) { /* Python code above cut the cells: touched[] is stale */
        PyErr_SetString(PyExc_RuntimeError, "compiled lane: the cells were cut during an order");
        goto done;
    }
    for (int t = 0; t < ntouched; t++)
        if (store_add(L->cells, touched[t], ORDERS, 1) < 0) goto done;
    rc = 0;
done:
    Py_XDECREF(region);
    Py_XDECREF(bounds);
    return rc;
}

PyDoc_STRVAR(order_run_doc, RUN_DOC("order_run", "shop.orders", "never: status is DONE or SLOW"));

static int apply_order_event(lane_t *L, run_t *R, const void *event) {
    return apply_order(L, R, (const order *)event);
}

static int scan_pageview_event(const uint8_t *p, Py_ssize_t n, void *ev) {
    return scan_pageview(p, n, ev);
}
static int scan_logistics_event(const uint8_t *p, Py_ssize_t n, void *ev) {
    return scan_logistics(p, n, ev);
}
static int scan_order_event(const uint8_t *p, Py_ssize_t n, void *ev) {
    return scan_order(p, n, ev);
}
static int64_t pageview_ts(const void *ev) { return ((const pageview *)ev)->ts; }
static int64_t logistics_ts(const void *ev) { return ((const logistics *)ev)->ts; }
static int64_t order_ts(const void *ev) { return ((const order *)ev)->ts; }
static const span *pageview_id(const void *ev) { return &((const pageview *)ev)->event_id; }
static const span *logistics_id(const void *ev) { return &((const logistics *)ev)->event_id; }
static const span *order_id(const void *ev) { return &((const order *)ev)->event_id; }

/* What makes a lane a topic's: its scanner (1: sure, with the event's fields as spans
 * into the record's bytes), the event's time and id, and what an admitted event does (0
 * done, APPLY: Python applies it, -1 error). */
typedef struct {
    const char *name;
    size_t event_size;
    int (*scan)(const uint8_t *p, Py_ssize_t n, void *ev);
    int64_t (*ts)(const void *ev);
    const span *(*event_id)(const void *ev);
    int (*apply)(lane_t *L, run_t *R, const void *ev);
} lane_ops;

static const lane_ops PAGEVIEW_OPS = {"pageview_run", sizeof(pageview), scan_pageview_event,
                                      pageview_ts, pageview_id, apply_pageview};
static const lane_ops LOGISTICS_OPS = {"logistics_run", sizeof(logistics), scan_logistics_event,
                                       logistics_ts, logistics_id, apply_logistics};
static const lane_ops ORDER_OPS = {"order_run", sizeof(order), scan_order_event, order_ts,
                                   order_id, apply_order_event};

/* The one run loop of the three lanes: record by record from run[start], the record's
 * bytes scanned (not sure: SLOW), admitted (future, stale or too late: SLOW; a repeated
 * id: counted), then applied by the topic's lane (APPLY: Python applies it). */
static PyObject *run_lane(const Core *core, PyObject *const *args, Py_ssize_t nargs,
                          const lane_ops *ops) {
    lane_t L;
    run_t R;
    if (!parse_args(core, ops->name, args, nargs, &L, &R)) return NULL;
    PyObject *seq = PySequence_Fast(args[1], "a lane's run must be a sequence");
    if (seq == NULL) return NULL;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **recs = PySequence_Fast_ITEMS(seq);
    int status = DONE;
    Py_ssize_t i = R.start;
    PyObject *value = NULL;
    void *ev = PyMem_Malloc(ops->event_size);
    if (ev == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (; i < n; i++) {
        int64_t ref;
        const int got = record_value(recs[i], &R, &value, &ref);
        if (got < 0) goto error;
        if (!got || !ops->scan((const uint8_t *)PyBytes_AS_STRING(value),
                               PyBytes_GET_SIZE(value), ev)) {
            status = SLOW; /* not sure: the contract decoder's */
            break;
        }
        const int adm = admit(&L, &R, ref, ops->ts(ev), ops->event_id(ev));
        if (adm < 0) goto error;
        if (adm == STOP) {
            status = SLOW;
            break;
        }
        if (adm == ADMIT) {
            const int rc = ops->apply(&L, &R, ev); /* ev's spans point into value */
            if (rc < 0) goto error;
            if (rc == APPLY) {
                status = APPLY;
                break;
            }
            R.processed++;
            R.consumed++;
        }
        Py_CLEAR(value);
    }
    entry_cache_clear(L.caches);
    Py_XDECREF(value);
    PyMem_Free(ev);
    Py_DECREF(seq);
    return result(i, status, &R);
error:
    entry_cache_clear(L.caches);
    Py_XDECREF(value);
    PyMem_Free(ev);
    Py_DECREF(seq);
    return NULL;
}

static PyObject *pageview_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return run_lane((const Core *)self, args, nargs, &PAGEVIEW_OPS);
}

static PyObject *logistics_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return run_lane((const Core *)self, args, nargs, &LOGISTICS_OPS);
}

static PyObject *order_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return run_lane((const Core *)self, args, nargs, &ORDER_OPS);
}

PyDoc_STRVAR(hot_entry_doc,
"hot_entry(state: LaneState, hk) -> HotEntry\n"
"\n"
"PartitionState.hot_entry for the other paths (orders, returns): the HotEntry of\n"
"hk = (category, color, size, price band, region, grain), built,\n"
"its cells marked, and cached in the state's hot dict.");

static PyObject *hot_entry_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!core_ready(self, "hot_entry")) return NULL;
    if (nargs != 2 || !PyObject_TypeCheck(args[0], &LaneStateType) ||
        !((LaneState *)args[0])->ready || !PyTuple_Check(args[1]) ||
        PyTuple_GET_SIZE(args[1]) != 6) {
        PyErr_SetString(PyExc_TypeError, "hot_entry(state: LaneState, hk[6]) expected");
        return NULL;
    }
    lane_t L;
    lane_from((const Core *)self, (const LaneState *)args[0], &L);
    PyObject *hk = args[1];
    PyObject *const dims[5] = {PyTuple_GET_ITEM(hk, 0), PyTuple_GET_ITEM(hk, 1),
                               PyTuple_GET_ITEM(hk, 2), PyTuple_GET_ITEM(hk, 3),
                               PyTuple_GET_ITEM(hk, 4)};
    /* the grain, hk[5], fixes every window */
    PyObject *bounds = grain_bounds(&L, PyTuple_GET_ITEM(hk, 5));
    if (bounds == NULL) return NULL;
    PyObject *entry = hot_entry(&L, hk, dims, bounds);
    Py_DECREF(bounds);
    return entry;
}

/* ------------------------------------------------------------------ test hooks */

/* The bytes of a hook's one argument: 1, or 0 with a TypeError. */
static int bytes_arg(PyObject *arg, const char *hook, const uint8_t **p, Py_ssize_t *n) {
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "%s takes bytes", hook);
        return 0;
    }
    *p = (const uint8_t *)PyBytes_AS_STRING(arg);
    *n = PyBytes_GET_SIZE(arg);
    return 1;
}

PyDoc_STRVAR(decode_pageview_doc,
"decode_pageview(raw: bytes) -> (event_id, ts, sku, visitor_id, region) | None\n"
"\n"
"The page-view decoder alone (for the equivalence tests): the fields when it is sure the\n"
"contract accepts `raw`, else None.");

static PyObject *decode_pageview(PyObject *self, PyObject *arg) {
    (void)self;
    const uint8_t *p;
    Py_ssize_t n;
    if (!bytes_arg(arg, "decode_pageview", &p, &n)) return NULL;
    pageview ev;
    if (!scan_pageview(p, n, &ev)) Py_RETURN_NONE;
    return Py_BuildValue("(s#Ls#s#s#)", (const char *)ev.event_id.p, ev.event_id.n,
                         (long long)ev.ts, (const char *)ev.sku.p, ev.sku.n,
                         (const char *)ev.visitor_id.p, ev.visitor_id.n,
                         (const char *)ev.region.p, ev.region.n);
}

PyDoc_STRVAR(decode_logistics_doc,
"decode_logistics(raw: bytes) -> (event_id, ts, event_type) | None\n"
"\n"
"The logistics decoder alone (for the equivalence tests).");

static PyObject *decode_logistics(PyObject *self, PyObject *arg) {
    (void)self;
    static const char *const kinds[] = {"shipped", "delivered", "returned",
                                        "restock_shipped", "restock_received", "stock_level"};
    const uint8_t *p;
    Py_ssize_t n;
    if (!bytes_arg(arg, "decode_logistics", &p, &n)) return NULL;
    logistics ev;
    if (!scan_logistics(p, n, &ev)) Py_RETURN_NONE;
    return Py_BuildValue("(s#Ls)", (const char *)ev.event_id.p, ev.event_id.n,
                         (long long)ev.ts, kinds[ev.kind]);
}

PyDoc_STRVAR(decode_order_doc,
"decode_order(raw: bytes) -> (event_id, ts, event_type, region,\n"
"                             [(sku, qty, unit_price, gmv_e4), ...]) | None\n"
"\n"
"The order decoder alone (for the equivalence tests).");

static PyObject *decode_order(PyObject *self, PyObject *arg) {
    (void)self;
    const uint8_t *p;
    Py_ssize_t n;
    if (!bytes_arg(arg, "decode_order", &p, &n)) return NULL;
    order *ev = PyMem_Malloc(sizeof *ev);
    if (ev == NULL) return PyErr_NoMemory();
    PyObject *out = NULL, *lines = NULL;
    if (!scan_order(p, n, ev)) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    lines = PyList_New(ev->nlines);
    if (lines == NULL) goto done;
    for (int k = 0; k < ev->nlines; k++) {
        const order_line *ln = &ev->lines[k];
        PyObject *t = Py_BuildValue("(s#LdL)", (const char *)ln->sku.p, ln->sku.n,
                                    (long long)ln->qty, ln->price, (long long)ln->gmv_e4);
        if (t == NULL) goto done;
        PyList_SET_ITEM(lines, k, t);
    }
    out = Py_BuildValue("(s#Lss#O)", (const char *)ev->event_id.p, ev->event_id.n,
                        (long long)ev->ts, ev->placed ? "order_placed" : "order_cancelled",
                        (const char *)ev->region.p, ev->region.n, lines);
done:
    Py_XDECREF(lines);
    PyMem_Free(ev);
    return out;
}

PyDoc_STRVAR(event_time_doc,
"event_time(text: bytes) -> int | None: epoch ms of an RFC 3339 time, as\n"
"schemas.fastpath.fast_event_time answers it (None: not sure).");

static PyObject *event_time(PyObject *self, PyObject *arg) {
    (void)self;
    const uint8_t *p;
    Py_ssize_t n;
    if (!bytes_arg(arg, "event_time", &p, &n)) return NULL;
    int64_t ms;
    if (!parse_rfc3339(p, n, &ms)) Py_RETURN_NONE;
    return PyLong_FromLongLong(ms);
}

PyDoc_STRVAR(id_hash_doc,
"id_hash(data: bytes) -> int: BLAKE2b with an 8-byte digest, little-endian\n"
"(streams.core.dedup.id_hash of the decoded string).");

static PyObject *id_hash(PyObject *self, PyObject *arg) {
    (void)self;
    const uint8_t *p;
    Py_ssize_t n;
    if (!bytes_arg(arg, "id_hash", &p, &n)) return NULL;
    return PyLong_FromUnsignedLongLong(blake2b64(p, (size_t)n));
}

static PyMethodDef Core_methods[] = {
    {"pageview_run", (PyCFunction)(void (*)(void))pageview_run, METH_FASTCALL, pageview_run_doc},
    {"logistics_run", (PyCFunction)(void (*)(void))logistics_run, METH_FASTCALL,
     logistics_run_doc},
    {"order_run", (PyCFunction)(void (*)(void))order_run, METH_FASTCALL, order_run_doc},
    {"hot_entry", (PyCFunction)(void (*)(void))hot_entry_py, METH_FASTCALL, hot_entry_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    LANES_TYPE(Core, Py_TPFLAGS_DEFAULT,
               "Core(*, sizes, visitor_sizes, grains, grain_fn, unknown, limits)\n\n"
               "The engine's compiled core: its settings, fixed here, and its caches; the lanes\n"
               "and hot_entry as methods on a partition's LaneState (DemandEngine._core)."),
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_members = Core_members,
    .tp_methods = Core_methods,
};

/* The stateless functions: the scanners, parser and hash as test hooks. */
static PyMethodDef methods[] = {
    {"decode_pageview", decode_pageview, METH_O, decode_pageview_doc},
    {"decode_logistics", decode_logistics, METH_O, decode_logistics_doc},
    {"decode_order", decode_order, METH_O, decode_order_doc},
    {"event_time", event_time, METH_O, event_time_doc},
    {"id_hash", id_hash, METH_O, id_hash_doc},
    {NULL, NULL, 0, NULL},
};

/* Multi-phase initialisation (PEP 489). The module keeps no mutable state: the caches
 * belong to each Core. What stays process-wide is immutable: the interned attribute names
 * (made once), and the static types. Static types cannot be
 * isolated per interpreter, so subinterpreters with their own GIL are declined. */
static int lanes_exec(PyObject *m) {
    if (S_value == NULL) {
        S_value = PyUnicode_InternFromString("value");
        S_timestamp = PyUnicode_InternFromString("timestamp");
        S_category = PyUnicode_InternFromString("category");
        S_color = PyUnicode_InternFromString("color");
        S_size = PyUnicode_InternFromString("size");
        S_price_band = PyUnicode_InternFromString("price_band");
        if (S_value == NULL || S_timestamp == NULL || S_category == NULL || S_color == NULL ||
            S_size == NULL || S_price_band == NULL) {
            Py_CLEAR(S_value);
            return -1;
        }
    }
    if (PyType_Ready(&IdSetType) < 0 || PyType_Ready(&VersionsType) < 0 ||
        PyType_Ready(&SkuHoursType) < 0 || PyType_Ready(&CellHashesType) < 0 ||
        PyType_Ready(&CellsType) < 0 || PyType_Ready(&LaneStateType) < 0 ||
        PyType_Ready(&LimitsType) < 0 ||
        PyType_Ready(&CoreType) < 0)
        return -1;
    if ((RunResultType.tp_name == NULL &&
         PyStructSequence_InitType2(&RunResultType, &RunResult_desc) < 0) ||
        (HotEntryType.tp_name == NULL &&
         PyStructSequence_InitType2(&HotEntryType, &HotEntry_desc) < 0) ||
        (PageViewEntryType.tp_name == NULL &&
         PyStructSequence_InitType2(&PageViewEntryType, &PageViewEntry_desc) < 0))
        return -1;
    if (PyModule_AddObjectRef(m, "IdSet", (PyObject *)&IdSetType) < 0 ||
        PyModule_AddObjectRef(m, "Versions", (PyObject *)&VersionsType) < 0 ||
        PyModule_AddObjectRef(m, "SkuHours", (PyObject *)&SkuHoursType) < 0 ||
        PyModule_AddObjectRef(m, "CellHashes", (PyObject *)&CellHashesType) < 0 ||
        PyModule_AddObjectRef(m, "Cells", (PyObject *)&CellsType) < 0 ||
        PyModule_AddObjectRef(m, "LaneState", (PyObject *)&LaneStateType) < 0 ||
        PyModule_AddObjectRef(m, "Limits", (PyObject *)&LimitsType) < 0 ||
        PyModule_AddObjectRef(m, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddObjectRef(m, "RunResult", (PyObject *)&RunResultType) < 0 ||
        PyModule_AddObjectRef(m, "HotEntry", (PyObject *)&HotEntryType) < 0 ||
        PyModule_AddObjectRef(m, "PageViewEntry", (PyObject *)&PageViewEntryType) < 0)
        return -1;
#define X(name)                                                                             \
    if (PyModule_AddIntConstant(m, #name, name) < 0) return -1;
    CELL_SLOTS(X)
    SKU_SLOTS(X)
#undef X
    if (PyModule_AddIntConstant(m, "DONE", DONE) < 0 ||
        PyModule_AddIntConstant(m, "SLOW", SLOW) < 0 ||
        PyModule_AddIntConstant(m, "APPLY", APPLY) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, (void *)lanes_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "streams.core._lanes",
    "The engine's compiled core (see streams/core/_lanes.c).", 0, methods,
    slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__lanes(void) { return PyModuleDef_Init(&module); }
