/*
 * serial.c — polled output on the 8250 UART at 0x3f8, a printf-lite on top
 * of it, and power-off through port 0xf4.
 *
 * kprintf understands %d %i %u %x %X %p %s %c %% with the l/ll/z length
 * modifiers, a field width and the '0' and '-' flags; nothing else (no
 * floats, no precision). Lines longer than 256 bytes are cut.
 * Lines end in a bare \n (no \r). Output only: input is never read.
 * Each byte costs a port write (a VM exit), so keep hot paths quiet.
 */
#include <stdarg.h>
#include "guest.h"

#define COM1 0x3f8
#define UART_LSR_THRE 0x20

static u32 fifo_depth = 1;

void serial_init(void)
{
	outb(COM1 + 1, 0x00);   /* IER: no interrupts */
	outb(COM1 + 3, 0x80);   /* LCR: DLAB */
	outb(COM1 + 0, 0x01);   /* divisor 1: 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);   /* LCR: 8N1 */
	outb(COM1 + 2, 0x07);   /* FCR: enable and clear FIFOs */
	outb(COM1 + 4, 0x03);   /* MCR: DTR, RTS */
	if ((inb(COM1 + 2) & 0xc0) == 0xc0)
		fifo_depth = 16;    /* 16550A: 16 bytes may follow one THRE */
}

void serial_write(const char *s, u64 n)
{
	while (n > 0) {
		u32 spins = 0;
		while (!(inb(COM1 + 5) & UART_LSR_THRE) && ++spins < 1000000)
			cpu_relax();
		for (u32 i = 0; i < fifo_depth && n > 0; i++, n--)
			outb(COM1, (u8)*s++);
	}
}

struct buf {
	char b[256];
	u32 n;
};

static void put(struct buf *o, char c)
{
	if (o->n < sizeof(o->b))
		o->b[o->n++] = c;
}

static void put_num(struct buf *o, u64 v, u32 base, int neg, int width, char pad, int left, int upper)
{
	const char *dig = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = dig[v % base];
		v /= base;
	} while (v);
	int len = n + neg;
	if (left)
		pad = ' ';
	if (neg && pad == '0')
		put(o, '-');
	for (int i = len; !left && i < width; i++)
		put(o, pad);
	if (neg && pad != '0')
		put(o, '-');
	while (n > 0)
		put(o, tmp[--n]);
	for (int i = len; left && i < width; i++)
		put(o, ' ');
}

static void vformat(struct buf *o, const char *f, va_list ap)
{
	for (; *f; f++) {
		if (*f != '%') {
			put(o, *f);
			continue;
		}
		char pad = ' ';
		int left = 0, width = 0, lng = 0;
		for (f++; *f == '0' || *f == '-'; f++)
			*f == '0' ? (pad = '0') : (left = 1);
		for (; *f >= '0' && *f <= '9'; f++)
			width = width * 10 + (*f - '0');
		for (; *f == 'l' || *f == 'z'; f++)
			lng = 1;
		switch (*f) {
		case 'd':
		case 'i': {
			s64 v = lng ? va_arg(ap, s64) : va_arg(ap, int);
			put_num(o, v < 0 ? -(u64)v : (u64)v, 10, v < 0, width, pad, left, 0);
			break;
		}
		case 'u':
			put_num(o, lng ? va_arg(ap, u64) : va_arg(ap, u32), 10, 0, width, pad, left, 0);
			break;
		case 'x':
		case 'X':
			put_num(o, lng ? va_arg(ap, u64) : va_arg(ap, u32), 16, 0, width, pad, left, *f == 'X');
			break;
		case 'p':
			put(o, '0');
			put(o, 'x');
			put_num(o, (u64)va_arg(ap, void *), 16, 0, width, pad, left, 0);
			break;
		case 'c':
			put(o, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			u64 n = strlen(s ? s : "(null)");
			for (int i = n; !left && i < width; i++)
				put(o, ' ');
			for (const char *p = s ? s : "(null)"; *p; p++)
				put(o, *p);
			for (int i = n; left && i < width; i++)
				put(o, ' ');
			break;
		}
		case '%':
			put(o, '%');
			break;
		default:
			put(o, '%');
			if (*f)
				put(o, *f);
			else
				f--;
		}
	}
}

int kprintf(const char *fmt, ...)
{
	struct buf o;
	va_list ap;
	o.n = 0;
	va_start(ap, fmt);
	vformat(&o, fmt, ap);
	va_end(ap);
	serial_write(o.b, o.n);
	return o.n;
}

/* poweroff writes code to the exit port; with no such device the write
 * returns and the vCPU spins (ring 3 cannot hlt). */
void poweroff(u32 code)
{
	outl(0xf4, code);
	for (;;)
		cpu_relax();
}

void fatal(const char *fmt, ...)
{
	struct buf o;
	va_list ap;
	o.n = 0;
	va_start(ap, fmt);
	vformat(&o, fmt, ap);
	va_end(ap);
	serial_write("fatal: ", 7);
	serial_write(o.b, o.n);
	serial_write("\n", 1);
	poweroff(EXIT_SETUP);
}
