/*
 * callmeter.rtp._fastpath: the per-packet work of the media plane, in C.
 *
 * Everything that runs once per RTP packet, and nothing else (ARCHITECTURE "Hot path
 * rules"; bench/rtp_load.py measures it). The Python classes keep every decision that is
 * not per packet: they subclass the types here, which hold the hot fields in C and expose
 * them as ordinary attributes, and the C code calls back into Python for the rare cases.
 *
 *   SeqState      base of stats.ReceiverStats: RFC 3550 A.1 for the next packet in
 *                 sequence and A.8 interarrival jitter for every packet. Any other packet
 *                 (probation, gap, late, duplicate, jump) goes to the Python method
 *                 ``_unusual``, which implements the rest of A.1 on the same fields.
 *   SendCounters  base of stats.SenderStats: the sender's packet and octet counts (6.4.1).
 *   ReaderState   base of stream._RtpReceiver: read one datagram from the stream's
 *                 connected RTP socket (section 5.1 header fields) and feed the SSRC's
 *                 statistics; a datagram that is not RTP version 2, or arrives while
 *                 receiving is off, goes to ``datagram_received``, a new SSRC or payload
 *                 type to ``_source`` (with the key PT << 32 | SSRC).
 *                 The arrival time is the kernel's receive timestamp when the socket has
 *                 SO_TIMESTAMPNS on (``timestamp_arrivals``), else the time the reactor
 *                 reported the socket readable.
 *   SendState     base of stream.RtpStream: ``pace(now)`` sends every packet due by ``now``
 *                 (header rewritten: sequence number, timestamp, SSRC; section 5.1), counts
 *                 the send lateness, and leaves stalls to ``_pace_behind``.
 *   Dispatch      a private level-triggered epoll set of sockets: ``dispatch(now)`` reads
 *                 every ready socket, a ReaderState directly, anything else by calling it.
 *   TimerFd       a Linux timerfd on the wall clock, for the pacer's wake-ups: epoll's own
 *                 timeout is whole milliseconds (rounded up), a timerfd is exact.
 *
 * The reactor thread is the only caller (the GIL is held throughout), so one receive and
 * one send buffer serve the process.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define RTP_SEQ_MOD 65536LL
#define BUFFER_SIZE 65536
#define HEADER_SIZE 12
#define MAX_EVENTS 256

static unsigned char rx_buffer[BUFFER_SIZE];
static unsigned char tx_buffer[BUFFER_SIZE];

static PyObject *str_unusual;            /* "_unusual" */
static PyObject *str_source;             /* "_source" */
static PyObject *str_datagram_received;  /* "datagram_received" */
static PyObject *str_on_packet;          /* "on_packet" */
static PyObject *str_pace_behind;        /* "_pace_behind" */

/* ---- SeqState: RFC 3550 A.1 (in sequence) and A.8 ------------------------------------ */

typedef struct {
    PyObject_HEAD
    long long packets;
    long long bytes;
    long long max_seq;
    long long next_seq;
    long long cycles;
    long long received;
    long long last_ts;
    double jitter;
    double last_arrival;
    double rate;
} SeqState;

static PyTypeObject SeqState_Type;

/* self.<name>(seq, rtp_ts, arrival), with size as a fourth argument when it is >= 0: the
 * C paths' calls back into Python for a packet. A new reference, or NULL with an exception. */
static PyObject *
call_packet_method(PyObject *self, PyObject *name, long seq, long long rtp_ts, double arrival,
                   long long size)
{
    PyObject *args[5] = {self, PyLong_FromLong(seq), PyLong_FromLongLong(rtp_ts),
                         PyFloat_FromDouble(arrival), NULL};
    size_t count = 4;
    if (size >= 0) {
        args[4] = PyLong_FromLongLong(size);
        count = 5;
    }
    PyObject *result = NULL;
    if (args[1] && args[2] && args[3] && (count == 4 || args[4])) {
        result = PyObject_VectorcallMethod(name, args, count | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                           NULL);
    }
    for (int k = 1; k < 5; k++) {
        Py_XDECREF(args[k]);
    }
    return result;
}

/* Account one packet: 16-bit seq, 32-bit timestamp, arrival in seconds, size in octets.
 * The next packet in sequence is handled here; any other goes through self._unusual(),
 * which returns True when the packet gives no jitter sample. -1 with an exception set. */
static int
seq_on_packet(SeqState *s, long seq, long long rtp_ts, double arrival, long long size)
{
    s->packets += 1;
    s->bytes += size;
    if (seq == s->next_seq) {
        s->max_seq = seq;
        s->next_seq = (seq + 1) & 0xFFFF;
        if (seq == 0) {
            s->cycles += RTP_SEQ_MOD; /* 65535 -> 0: a new cycle (A.1) */
        }
        s->received += 1;
    }
    else {
        PyObject *result = call_packet_method((PyObject *)s, str_unusual, seq, rtp_ts, arrival, -1);
        if (result == NULL) {
            return -1;
        }
        int no_sample = PyObject_IsTrue(result);
        Py_DECREF(result);
        if (no_sample != 0) {
            return no_sample < 0 ? -1 : 0;
        }
    }
    /* Interarrival jitter (A.8): D = (Rj - Ri) - (Sj - Si), J += (|D| - J) / 16, with the
     * timestamp difference taken modulo 2**32 (a wrap is no jump). */
    long long dts = (rtp_ts - s->last_ts) & 0xFFFFFFFFLL;
    if (dts > 0x7FFFFFFFLL) {
        dts -= 0x100000000LL;
    }
    double d = (arrival - s->last_arrival) * s->rate - (double)dts;
    if (d < 0.0) {
        d = -d;
    }
    s->jitter += (d - s->jitter) * 0.0625;
    s->last_ts = rtp_ts;
    s->last_arrival = arrival;
    return 0;
}

static PyObject *
SeqState_on_packet(SeqState *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "on_packet(seq, rtp_ts, arrival, size)");
        return NULL;
    }
    long seq = PyLong_AsLong(args[0]);
    long long rtp_ts = PyLong_AsLongLong(args[1]);
    double arrival = PyFloat_AsDouble(args[2]);
    long long size = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (seq < 0 || seq > 0xFFFF || rtp_ts < 0 || rtp_ts > 0xFFFFFFFFLL) {
        PyErr_Format(PyExc_ValueError, "sequence number %ld or timestamp %lld out of range",
                     seq, rtp_ts);
        return NULL;
    }
    if (seq_on_packet(self, seq, rtp_ts, arrival, size) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef SeqState_methods[] = {
    {"on_packet", (PyCFunction)(void (*)(void))SeqState_on_packet, METH_FASTCALL,
     "on_packet(seq, rtp_ts, arrival, size): account one received packet (RFC 3550 A.1, "
     "A.8)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef SeqState_members[] = {
    {"packets", T_LONGLONG, offsetof(SeqState, packets), 0, "datagrams fed"},
    {"bytes", T_LONGLONG, offsetof(SeqState, bytes), 0, "their octets"},
    {"_max_seq", T_LONGLONG, offsetof(SeqState, max_seq), 0, NULL},
    {"_next_seq", T_LONGLONG, offsetof(SeqState, next_seq), 0, NULL},
    {"_cycles", T_LONGLONG, offsetof(SeqState, cycles), 0, NULL},
    {"_received", T_LONGLONG, offsetof(SeqState, received), 0, NULL},
    {"_last_ts", T_LONGLONG, offsetof(SeqState, last_ts), 0, NULL},
    {"_jitter", T_DOUBLE, offsetof(SeqState, jitter), 0, NULL},
    {"_last_arrival", T_DOUBLE, offsetof(SeqState, last_arrival), 0, NULL},
    {"_rate", T_DOUBLE, offsetof(SeqState, rate), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SeqState_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callmeter.rtp._fastpath.SeqState",
    .tp_doc = "Per-packet receive state of one SSRC (RFC 3550 A.1 in sequence, A.8).",
    .tp_basicsize = sizeof(SeqState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_methods = SeqState_methods,
    .tp_members = SeqState_members,
};

/* ---- SendCounters: the sender info's counts (6.4.1) ------------------------------------ */

typedef struct {
    PyObject_HEAD
    long long packets;
    long long octets;
} SendCounters;

static PyMemberDef SendCounters_members[] = {
    {"packets", T_LONGLONG, offsetof(SendCounters, packets), 0, "RTP packets sent"},
    {"octets", T_LONGLONG, offsetof(SendCounters, octets), 0, "their payload octets"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SendCounters_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callmeter.rtp._fastpath.SendCounters",
    .tp_doc = "A sender's packet and payload octet counts (RFC 3550 6.4.1).",
    .tp_basicsize = sizeof(SendCounters),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_members = SendCounters_members,
};

/* ---- ReaderState: one stream's RTP receive path ---------------------------------------- */

typedef struct {
    PyObject_HEAD
    int fd;
    char enabled;
    long long last_ssrc;
    PyObject *last; /* the SeqState (or other statistics object) of last_ssrc */
} ReaderState;

static PyTypeObject ReaderState_Type;

static int
ReaderState_init_fields(ReaderState *self)
{
    self->fd = -1;
    self->enabled = 1;
    self->last_ssrc = -1;
    return 0;
}

static PyObject *
ReaderState_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    ReaderState *self = (ReaderState *)type->tp_alloc(type, 0);
    if (self != NULL) {
        ReaderState_init_fields(self);
    }
    return (PyObject *)self;
}

static int
ReaderState_traverse(ReaderState *self, visitproc visit, void *arg)
{
    Py_VISIT(self->last);
    return 0;
}

static int
ReaderState_clear(ReaderState *self)
{
    Py_CLEAR(self->last);
    return 0;
}

static void
ReaderState_dealloc(ReaderState *self)
{
    PyObject_GC_UnTrack(self);
    ReaderState_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
call_with_floats(PyObject *self, PyObject *name, PyObject *first, PyObject *second,
                 double now)
{
    PyObject *when = PyFloat_FromDouble(now);
    if (when == NULL) {
        return NULL;
    }
    PyObject *args[4] = {self, first, second, when};
    PyObject *result =
        PyObject_VectorcallMethod(name, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(when);
    return result;
}

/* Read one datagram from the connected RTP socket (level-triggered: more come again).
 * 0 when done (nothing to read is fine), -1 with an exception set. */
static int
reader_read(ReaderState *r, double now)
{
    if (r->fd < 0) {
        return 0;
    }
    union {
        char buffer[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = rx_buffer, .iov_len = BUFFER_SIZE};
    struct msghdr message = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buffer,
                             .msg_controllen = sizeof control.buffer};
    ssize_t size = recvmsg(r->fd, &message, 0);
    if (size < 0) {
        return 0; /* EAGAIN after a spurious wake-up; ICMP errors on UDP */
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c != NULL; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec stamp;
            memcpy(&stamp, CMSG_DATA(c), sizeof stamp);
            now = (double)stamp.tv_sec + (double)stamp.tv_nsec * 1e-9;
        }
    }
    if (size < HEADER_SIZE || (rx_buffer[0] & 0xC0) != 0x80 || !r->enabled) {
        PyObject *data = PyBytes_FromStringAndSize((const char *)rx_buffer, size);
        if (data == NULL) {
            return -1;
        }
        PyObject *result =
            call_with_floats((PyObject *)r, str_datagram_received, data, Py_None, now);
        Py_DECREF(data);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
        return 0;
    }
    long seq = ((long)rx_buffer[2] << 8) | rx_buffer[3];
    long long rtp_ts = ((long long)rx_buffer[4] << 24) | ((long long)rx_buffer[5] << 16) |
                       ((long long)rx_buffer[6] << 8) | rx_buffer[7];
    /* The statistics are per SSRC and payload type: the key is PT << 32 | SSRC, so an
     * RFC 4733 event or RFC 3389 comfort-noise packet, even in the audio's SSRC, reaches
     * statistics of its own (_source decides what they are). */
    long long ssrc = ((long long)(rx_buffer[1] & 0x7F) << 32) |
                     ((long long)rx_buffer[8] << 24) | ((long long)rx_buffer[9] << 16) |
                     ((long long)rx_buffer[10] << 8) | rx_buffer[11];
    PyObject *stats;
    if (ssrc == r->last_ssrc && r->last != NULL) {
        stats = r->last;
        Py_INCREF(stats);
    }
    else {
        PyObject *key = PyLong_FromLongLong(ssrc);
        if (key == NULL) {
            return -1;
        }
        PyObject *args[2] = {(PyObject *)r, key};
        stats = PyObject_VectorcallMethod(str_source, args,
                                          2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(key);
        if (stats == NULL) {
            return -1;
        }
    }
    int status = 0;
    if (PyObject_TypeCheck(stats, &SeqState_Type)) {
        status = seq_on_packet((SeqState *)stats, seq, rtp_ts, now, (long long)size);
    }
    else {
        /* Statistics of another kind (a test's, say): its own on_packet. */
        PyObject *result =
            call_packet_method(stats, str_on_packet, seq, rtp_ts, now, (long long)size);
        status = result == NULL ? -1 : 0;
        Py_XDECREF(result);
    }
    Py_DECREF(stats);
    return status;
}

static PyObject *
ReaderState_read(ReaderState *self, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (reader_read(self, now) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
ReaderState_call(ReaderState *self, PyObject *args, PyObject *kwds)
{
    double now;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "reader(now) takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "d", &now)) {
        return NULL;
    }
    if (reader_read(self, now) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef ReaderState_methods[] = {
    {"read", (PyCFunction)ReaderState_read, METH_O,
     "read(now): the RTP socket is readable; take one datagram that arrived at now."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ReaderState_members[] = {
    {"_fd", T_INT, offsetof(ReaderState, fd), 0, "the connected RTP socket, -1: none"},
    {"enabled", T_BOOL, offsetof(ReaderState, enabled), 0,
     "False: RTP is not ours to count (sendonly/inactive)"},
    {"_last_ssrc", T_LONGLONG, offsetof(ReaderState, last_ssrc), 0,
     "the key (PT << 32 | SSRC) of the last packet's statistics, _last"},
    {"_last", T_OBJECT, offsetof(ReaderState, last), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ReaderState_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callmeter.rtp._fastpath.ReaderState",
    .tp_doc = "The RTP receive path of one stream; calling it reads one datagram.",
    .tp_basicsize = sizeof(ReaderState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = ReaderState_new,
    .tp_traverse = (traverseproc)ReaderState_traverse,
    .tp_clear = (inquiry)ReaderState_clear,
    .tp_dealloc = (destructor)ReaderState_dealloc,
    .tp_call = (ternaryfunc)ReaderState_call,
    .tp_methods = ReaderState_methods,
    .tp_members = ReaderState_members,
};

/* ---- SendState: the pacer's per-stream send path (section 5.1) ------------------------- */

typedef struct {
    PyObject_HEAD
    int fd;              /* the connected RTP socket, -1: send through rtp_send */
    double due;          /* start + mts / clock_rate: the next packet's due time */
    double start;
    double inv_rate;
    double max_late;
    double late_inv;
    long long index;     /* next payload */
    long long n;         /* payloads in the loop */
    long long seq;
    long long mts;       /* media time since start, timestamp units */
    long long ts0;
    long long ssrc;
    long long send_errors;
    long long skipped;
    PyObject *rtp_send;  /* callable(bytes) or None */
    PyObject *payloads;  /* tuple of bytes */
    PyObject *second;    /* tuple of int: the header's second octet per payload */
    PyObject *incs;      /* tuple of int: timestamp increment after each payload */
    PyObject *late_counts; /* writable buffer of int64: lateness bins */
    PyObject *sender;    /* SendCounters */
} SendState;

static PyObject *
SendState_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    SendState *self = (SendState *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->fd = -1;
    }
    return (PyObject *)self;
}

static int
SendState_traverse(SendState *self, visitproc visit, void *arg)
{
    Py_VISIT(self->rtp_send);
    Py_VISIT(self->payloads);
    Py_VISIT(self->second);
    Py_VISIT(self->incs);
    Py_VISIT(self->late_counts);
    Py_VISIT(self->sender);
    return 0;
}

static int
SendState_clear(SendState *self)
{
    Py_CLEAR(self->rtp_send);
    Py_CLEAR(self->payloads);
    Py_CLEAR(self->second);
    Py_CLEAR(self->incs);
    Py_CLEAR(self->late_counts);
    Py_CLEAR(self->sender);
    return 0;
}

static void
SendState_dealloc(SendState *self)
{
    PyObject_GC_UnTrack(self);
    SendState_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A socket descriptor or a Python callable to send with; neither: stopped. */
static int
can_send(SendState *s)
{
    return s->fd >= 0 || (s->rtp_send != NULL && s->rtp_send != Py_None);
}

/* Send the packet of payload ``i``: 0 sent, 1 not sent (an OSError), -1 exception set. */
static int
send_one(SendState *s, Py_ssize_t i, Py_ssize_t *payload_size)
{
    /* Checked per packet: a Python _rtp_send may have reconfigured the stream. */
    if (s->payloads == NULL || !PyTuple_Check(s->payloads) || s->second == NULL ||
        !PyTuple_Check(s->second) || i >= PyTuple_GET_SIZE(s->payloads) ||
        i >= PyTuple_GET_SIZE(s->second)) {
        PyErr_SetString(PyExc_TypeError,
                        "_payloads, _second and _incs must be tuples of _n items");
        return -1;
    }
    PyObject *payload = PyTuple_GET_ITEM(s->payloads, i);
    long second = PyLong_AsLong(PyTuple_GET_ITEM(s->second, i));
    if (!PyBytes_Check(payload) || (second == -1 && PyErr_Occurred())) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "payloads must be bytes");
        }
        return -1;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(payload);
    if (size > BUFFER_SIZE - HEADER_SIZE) {
        PyErr_Format(PyExc_ValueError, "RTP payload of %zd octets is too large", size);
        return -1;
    }
    unsigned long long ts = (unsigned long long)(s->ts0 + s->mts) & 0xFFFFFFFFULL;
    unsigned long long ssrc = (unsigned long long)s->ssrc;
    unsigned char *h = tx_buffer;
    h[0] = 0x80; /* version 2, no padding, no extension, no CSRC */
    h[1] = (unsigned char)second;
    h[2] = (unsigned char)(s->seq >> 8);
    h[3] = (unsigned char)s->seq;
    h[4] = (unsigned char)(ts >> 24);
    h[5] = (unsigned char)(ts >> 16);
    h[6] = (unsigned char)(ts >> 8);
    h[7] = (unsigned char)ts;
    h[8] = (unsigned char)(ssrc >> 24);
    h[9] = (unsigned char)(ssrc >> 16);
    h[10] = (unsigned char)(ssrc >> 8);
    h[11] = (unsigned char)ssrc;
    memcpy(tx_buffer + HEADER_SIZE, PyBytes_AS_STRING(payload), (size_t)size);
    *payload_size = size;
    if (s->fd >= 0) {
        /* EAGAIN/ENOBUFS/unreachable: not sent, the sequence number still used. */
        return send(s->fd, tx_buffer, (size_t)size + HEADER_SIZE, 0) < 0 ? 1 : 0;
    }
    PyObject *packet = PyBytes_FromStringAndSize((const char *)tx_buffer, size + HEADER_SIZE);
    if (packet == NULL) {
        return -1;
    }
    PyObject *result = PyObject_CallOneArg(s->rtp_send, packet);
    Py_DECREF(packet);
    if (result == NULL) {
        if (PyErr_ExceptionMatches(PyExc_OSError)) {
            PyErr_Clear();
            return 1;
        }
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static PyObject *
SendState_pace(SendState *self, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    double due = self->due;
    if (due > now) {
        return PyFloat_FromDouble(due);
    }
    if (!can_send(self) || now - due > self->max_late) {
        PyObject *args[2] = {(PyObject *)self, arg};
        return PyObject_VectorcallMethod(str_pace_behind, args,
                                         2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    if (self->payloads == NULL || !PyTuple_Check(self->payloads) || self->second == NULL ||
        !PyTuple_Check(self->second) || self->incs == NULL || !PyTuple_Check(self->incs) ||
        self->n <= 0 || PyTuple_GET_SIZE(self->payloads) < self->n ||
        PyTuple_GET_SIZE(self->second) < self->n || PyTuple_GET_SIZE(self->incs) < self->n) {
        PyErr_SetString(PyExc_TypeError,
                        "_payloads, _second and _incs must be tuples of _n items");
        return NULL;
    }
    if (self->sender == NULL || !PyObject_TypeCheck(self->sender, &SendCounters_Type)) {
        PyErr_SetString(PyExc_TypeError, "sender must be a SendCounters");
        return NULL;
    }
    /* Held: a Python _rtp_send may replace the stream's sender while we count in it. */
    PyObject *sender = self->sender;
    Py_INCREF(sender);
    SendCounters *counters = (SendCounters *)sender;
    Py_buffer view;
    if (self->late_counts == NULL ||
        PyObject_GetBuffer(self->late_counts, &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        Py_DECREF(sender);
        PyErr_SetString(PyExc_TypeError, "_late_counts must be an array('q')");
        return NULL;
    }
    if (view.itemsize != 8 || view.format == NULL || strcmp(view.format, "q") != 0 ||
        view.len < 8) {
        PyBuffer_Release(&view);
        Py_DECREF(sender);
        PyErr_SetString(PyExc_TypeError, "_late_counts must be an array('q')");
        return NULL;
    }
    long long *bins = (long long *)view.buf;
    Py_ssize_t last_bin = view.len / 8 - 1;
    /* Keep this object alive through Python callbacks (rtp_send may stop the stream). */
    Py_INCREF(self);
    PyObject *incs = self->incs;
    Py_INCREF(incs);
    PyObject *out = NULL;
    for (;;) {
        Py_ssize_t i = (Py_ssize_t)self->index;
        Py_ssize_t payload_size = 0;
        int sent = send_one(self, i, &payload_size);
        if (sent < 0) {
            goto done;
        }
        if (sent == 0) {
            counters->packets += 1;
            counters->octets += payload_size;
        }
        else {
            self->send_errors += 1;
        }
        Py_ssize_t bin = (Py_ssize_t)((now - due) * self->late_inv);
        bins[bin < 0 ? 0 : (bin > last_bin ? last_bin : bin)] += 1;
        if (i >= PyTuple_GET_SIZE(incs)) {
            PyErr_SetString(PyExc_TypeError, "_incs shorter than _n");
            goto done;
        }
        long long inc = PyLong_AsLongLong(PyTuple_GET_ITEM(incs, i));
        if (inc == -1 && PyErr_Occurred()) {
            goto done;
        }
        self->seq = (self->seq + 1) & 0xFFFF;
        self->mts += inc;
        i += 1;
        self->index = i < self->n ? i : 0;
        due = self->start + (double)self->mts * self->inv_rate;
        self->due = due;
        if (due > now || !can_send(self)) { /* stopped by a Python _rtp_send: no more */
            break;
        }
    }
    out = PyFloat_FromDouble(due);
done:
    PyBuffer_Release(&view);
    Py_DECREF(sender);
    Py_DECREF(incs);
    Py_DECREF(self);
    return out;
}

static PyMethodDef SendState_methods[] = {
    {"pace", (PyCFunction)SendState_pace, METH_O,
     "pace(now): send every packet due by now (more than _max_late behind: "
     "_pace_behind); return the next due time."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef SendState_members[] = {
    {"_rtp_fd", T_INT, offsetof(SendState, fd), 0, "connected RTP socket, -1: _rtp_send"},
    {"_due", T_DOUBLE, offsetof(SendState, due), 0, NULL},
    {"_start", T_DOUBLE, offsetof(SendState, start), 0, NULL},
    {"_inv_rate", T_DOUBLE, offsetof(SendState, inv_rate), 0, NULL},
    {"_max_late", T_DOUBLE, offsetof(SendState, max_late), 0, NULL},
    {"_late_inv", T_DOUBLE, offsetof(SendState, late_inv), 0, NULL},
    {"_index", T_LONGLONG, offsetof(SendState, index), 0, NULL},
    {"_n", T_LONGLONG, offsetof(SendState, n), 0, NULL},
    {"_seq", T_LONGLONG, offsetof(SendState, seq), 0, NULL},
    {"_mts", T_LONGLONG, offsetof(SendState, mts), 0, NULL},
    {"_ts0", T_LONGLONG, offsetof(SendState, ts0), 0, NULL},
    {"ssrc", T_LONGLONG, offsetof(SendState, ssrc), 0, "our SSRC"},
    {"send_errors", T_LONGLONG, offsetof(SendState, send_errors), 0, NULL},
    {"skipped", T_LONGLONG, offsetof(SendState, skipped), 0, NULL},
    {"_rtp_send", T_OBJECT, offsetof(SendState, rtp_send), 0, NULL},
    {"_payloads", T_OBJECT, offsetof(SendState, payloads), 0, NULL},
    {"_second", T_OBJECT, offsetof(SendState, second), 0, NULL},
    {"_incs", T_OBJECT, offsetof(SendState, incs), 0, NULL},
    {"_late_counts", T_OBJECT, offsetof(SendState, late_counts), 0, NULL},
    {"sender", T_OBJECT, offsetof(SendState, sender), 0, "the SendCounters"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SendState_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callmeter.rtp._fastpath.SendState",
    .tp_doc = "The send path of one RTP stream, driven by the pacer (RFC 3550 5.1).",
    .tp_basicsize = sizeof(SendState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = SendState_new,
    .tp_traverse = (traverseproc)SendState_traverse,
    .tp_clear = (inquiry)SendState_clear,
    .tp_dealloc = (destructor)SendState_dealloc,
    .tp_methods = SendState_methods,
    .tp_members = SendState_members,
};

/* ---- Dispatch: a private epoll set behind one reactor reader ----------------------------- */

typedef struct {
    PyObject_HEAD
    int epfd;
    Py_ssize_t size;     /* slots in targets */
    Py_ssize_t count;    /* registered */
    PyObject **targets;  /* indexed by file descriptor */
} Dispatch;

static PyObject *
Dispatch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds != NULL && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Dispatch() takes no arguments");
        return NULL;
    }
    Dispatch *self = (Dispatch *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (self->epfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
Dispatch_traverse(Dispatch *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->size; i++) {
        Py_VISIT(self->targets[i]);
    }
    return 0;
}

static int
Dispatch_clear(Dispatch *self)
{
    for (Py_ssize_t i = 0; i < self->size; i++) {
        Py_CLEAR(self->targets[i]);
    }
    self->count = 0;
    return 0;
}

static void
Dispatch_dealloc(Dispatch *self)
{
    PyObject_GC_UnTrack(self);
    Dispatch_clear(self);
    PyMem_Free(self->targets);
    if (self->epfd >= 0) {
        close(self->epfd);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Dispatch_register(Dispatch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "register(fd, target)");
        return NULL;
    }
    int fd = PyObject_AsFileDescriptor(args[0]);
    if (fd < 0) {
        return NULL;
    }
    PyObject *target = args[1];
    if (!PyCallable_Check(target)) {
        PyErr_SetString(PyExc_TypeError, "target must be callable with the arrival time");
        return NULL;
    }
    if (self->epfd < 0) {
        PyErr_SetString(PyExc_ValueError, "dispatch closed");
        return NULL;
    }
    if (fd >= self->size) {
        Py_ssize_t size = self->size ? self->size : 64;
        while (size <= fd) {
            size *= 2;
        }
        PyObject **grown = PyMem_Realloc(self->targets, (size_t)size * sizeof(PyObject *));
        if (grown == NULL) {
            return PyErr_NoMemory();
        }
        memset(grown + self->size, 0, (size_t)(size - self->size) * sizeof(PyObject *));
        self->targets = grown;
        self->size = size;
    }
    if (self->targets[fd] != NULL) {
        PyErr_Format(PyExc_ValueError, "file descriptor %d already registered", fd);
        return NULL;
    }
    struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &event) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_INCREF(target);
    self->targets[fd] = target;
    self->count += 1;
    Py_RETURN_NONE;
}

static PyObject *
Dispatch_unregister(Dispatch *self, PyObject *arg)
{
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0) {
        return NULL;
    }
    if (fd >= self->size || self->targets[fd] == NULL) {
        Py_RETURN_FALSE;
    }
    /* A closed descriptor has left the set already: ENOENT/EBADF are fine. */
    if (self->epfd >= 0) {
        epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL);
    }
    self->count -= 1;
    Py_CLEAR(self->targets[fd]);
    Py_RETURN_TRUE;
}

static PyObject *
Dispatch_dispatch(Dispatch *self, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->epfd < 0) {
        return PyLong_FromLong(0);
    }
    struct epoll_event events[MAX_EVENTS];
    int ready = epoll_wait(self->epfd, events, MAX_EVENTS, 0);
    if (ready < 0) {
        if (errno == EINTR) {
            return PyLong_FromLong(0);
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    for (int i = 0; i < ready; i++) {
        int fd = events[i].data.fd;
        /* Unregistered by an earlier target of this batch: nothing to do. */
        if (fd >= self->size || self->targets[fd] == NULL) {
            continue;
        }
        PyObject *target = self->targets[fd];
        Py_INCREF(target);
        int status;
        if (PyObject_TypeCheck(target, &ReaderState_Type)) {
            status = reader_read((ReaderState *)target, now);
        }
        else {
            PyObject *result = PyObject_CallOneArg(target, arg);
            status = result == NULL ? -1 : 0;
            Py_XDECREF(result);
        }
        Py_DECREF(target);
        if (status < 0) {
            return NULL; /* level-triggered: the rest of the batch comes again */
        }
    }
    return PyLong_FromLong(ready);
}

static PyObject *
Dispatch_fileno(Dispatch *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->epfd);
}

static PyObject *
Dispatch_close(Dispatch *self, PyObject *Py_UNUSED(ignored))
{
    Dispatch_clear(self);
    if (self->epfd >= 0) {
        close(self->epfd);
        self->epfd = -1;
    }
    Py_RETURN_NONE;
}

static Py_ssize_t
Dispatch_len(Dispatch *self)
{
    return self->count;
}

static PySequenceMethods Dispatch_as_sequence = {
    .sq_length = (lenfunc)Dispatch_len,
};

static PyMethodDef Dispatch_methods[] = {
    {"register", (PyCFunction)(void (*)(void))Dispatch_register, METH_FASTCALL,
     "register(fd, target): call target(now) whenever fd is readable (a ReaderState is "
     "read directly)."},
    {"unregister", (PyCFunction)Dispatch_unregister, METH_O,
     "unregister(fd): stop watching fd; False if it was not registered."},
    {"dispatch", (PyCFunction)Dispatch_dispatch, METH_O,
     "dispatch(now): serve every ready descriptor once; return how many were ready."},
    {"fileno", (PyCFunction)Dispatch_fileno, METH_NOARGS, "the epoll descriptor"},
    {"close", (PyCFunction)Dispatch_close, METH_NOARGS, "close the epoll descriptor"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Dispatch_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callmeter.rtp._fastpath.Dispatch",
    .tp_doc = "A level-triggered epoll set of sockets, each with its reader.",
    .tp_basicsize = sizeof(Dispatch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Dispatch_new,
    .tp_traverse = (traverseproc)Dispatch_traverse,
    .tp_clear = (inquiry)Dispatch_clear,
    .tp_dealloc = (destructor)Dispatch_dealloc,
    .tp_methods = Dispatch_methods,
    .tp_as_sequence = &Dispatch_as_sequence,
};

/* ---- TimerFd: exact wake-ups for the pacer ------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    int fd;
} TimerFd;

static PyObject *
TimerFd_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds != NULL && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "TimerFd() takes no arguments");
        return NULL;
    }
    TimerFd *self = (TimerFd *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    /* CLOCK_REALTIME: the reactor's seconds() is time.time(). */
    self->fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    if (self->fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
TimerFd_dealloc(TimerFd *self)
{
    if (self->fd >= 0) {
        close(self->fd);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
timer_set(TimerFd *self, double when)
{
    if (self->fd < 0) {
        PyErr_SetString(PyExc_ValueError, "timer closed");
        return -1;
    }
    struct itimerspec spec = {{0, 0}, {0, 0}};
    if (when > 0.0) {
        double whole = (double)(time_t)when;
        spec.it_value.tv_sec = (time_t)when;
        spec.it_value.tv_nsec = (long)((when - whole) * 1e9);
        if (spec.it_value.tv_nsec >= 1000000000L) {
            spec.it_value.tv_nsec = 999999999L;
        }
        if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) {
            spec.it_value.tv_nsec = 1; /* zero would disarm it */
        }
    }
    if (timerfd_settime(self->fd, TFD_TIMER_ABSTIME, &spec, NULL) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static PyObject *
TimerFd_arm(TimerFd *self, PyObject *arg)
{
    double when = PyFloat_AsDouble(arg);
    if (when == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(when > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "arm(when): a positive wall-clock time");
        return NULL;
    }
    if (timer_set(self, when) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
TimerFd_disarm(TimerFd *self, PyObject *Py_UNUSED(ignored))
{
    if (timer_set(self, 0.0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
TimerFd_read(TimerFd *self, PyObject *Py_UNUSED(ignored))
{
    unsigned long long expirations = 0;
    if (self->fd >= 0 && read(self->fd, &expirations, sizeof expirations) < 0) {
        expirations = 0; /* EAGAIN: not expired (re-armed since it became readable) */
    }
    return PyLong_FromUnsignedLongLong(expirations);
}

static PyObject *
TimerFd_fileno(TimerFd *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->fd);
}

static PyObject *
TimerFd_close(TimerFd *self, PyObject *Py_UNUSED(ignored))
{
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
    Py_RETURN_NONE;
}

static PyMethodDef TimerFd_methods[] = {
    {"arm", (PyCFunction)TimerFd_arm, METH_O,
     "arm(when): become readable at wall-clock time when (seconds; past: at once)."},
    {"disarm", (PyCFunction)TimerFd_disarm, METH_NOARGS, "cancel the armed time"},
    {"read", (PyCFunction)TimerFd_read, METH_NOARGS,
     "expirations since the last read (0: none); clears the readiness"},
    {"fileno", (PyCFunction)TimerFd_fileno, METH_NOARGS, "the timerfd"},
    {"close", (PyCFunction)TimerFd_close, METH_NOARGS, "close the timerfd"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TimerFd_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "callmeter.rtp._fastpath.TimerFd",
    .tp_doc = "A one-shot Linux timerfd on the wall clock (CLOCK_REALTIME, absolute times).",
    .tp_basicsize = sizeof(TimerFd),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = TimerFd_new,
    .tp_dealloc = (destructor)TimerFd_dealloc,
    .tp_methods = TimerFd_methods,
};

/* ---- the module ------------------------------------------------------------------------ */

static PyObject *
timestamp_arrivals(PyObject *module, PyObject *arg)
{
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0) {
        return NULL;
    }
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef fastpath_functions[] = {
    {"timestamp_arrivals", (PyCFunction)timestamp_arrivals, METH_O,
     "timestamp_arrivals(sock): have the kernel stamp every datagram's arrival "
     "(SO_TIMESTAMPNS, wall clock); a ReaderState then uses that as the arrival time."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "callmeter.rtp._fastpath",
    .m_doc = "The per-packet work of the media plane (RFC 3550), in C.",
    .m_size = -1,
    .m_methods = fastpath_functions,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    PyTypeObject *types[] = {&SeqState_Type,  &SendCounters_Type, &ReaderState_Type,
                             &SendState_Type, &Dispatch_Type,     &TimerFd_Type};
    const char *names[] = {"SeqState", "SendCounters", "ReaderState",
                           "SendState", "Dispatch",     "TimerFd"};
    str_unusual = PyUnicode_InternFromString("_unusual");
    str_source = PyUnicode_InternFromString("_source");
    str_datagram_received = PyUnicode_InternFromString("datagram_received");
    str_on_packet = PyUnicode_InternFromString("on_packet");
    str_pace_behind = PyUnicode_InternFromString("_pace_behind");
    if (!str_unusual || !str_source || !str_datagram_received || !str_on_packet ||
        !str_pace_behind) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&fastpath_module);
    if (module == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (PyType_Ready(types[i]) < 0 ||
            PyModule_AddObjectRef(module, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(module);
            return NULL;
        }
    }
    if (PyModule_AddIntConstant(module, "BUFFER_SIZE", BUFFER_SIZE) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
