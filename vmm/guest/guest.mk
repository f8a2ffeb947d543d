# guest.mk — build the freestanding test guest, bin/guest.elf, with the
# machine's gcc and ld. Included by the top-level Makefile (paths are
# relative to the repository root); `make -f vmm/guest/guest.mk bin/guest.elf`
# works on its own too. Objects go to vmm/guest/build/ (gitignored).
# Every variable starts with GUEST_; this file does not change the
# includer's default goal.

GUEST_SAVED_GOAL := $(.DEFAULT_GOAL)

GUEST_DIR   := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
GUEST_SRC   := $(GUEST_DIR)/src
GUEST_BUILD := $(GUEST_DIR)/build
GUEST_ELF   := bin/guest.elf

GUEST_CC      ?= gcc
GUEST_LD      ?= ld
# GiB identity-mapped when the CPU lacks 1 GiB pages (256 KiB of page tables
# per 64 GiB); with 1 GiB pages the guest maps 512 GiB regardless.
GUEST_MAP_GIB ?= 64

GUEST_CPPFLAGS := -DMAP_GIB=$(GUEST_MAP_GIB) -MMD -MP
GUEST_CFLAGS   := -std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter \
	-ffreestanding -fno-builtin -nostdlib -fno-pic -fno-pie -fno-stack-protector \
	-mno-red-zone -march=x86-64 -mtune=generic -fcf-protection=none \
	-fno-asynchronous-unwind-tables -fno-unwind-tables \
	-fno-tree-loop-distribute-patterns
GUEST_LDFLAGS  := -m elf_x86_64 -nostdlib -static -z max-page-size=0x1000 \
	-z noexecstack --no-warn-rwx-segments -T $(GUEST_SRC)/guest.ld

GUEST_C_SRCS := main.c serial.c lib.c cmdline.c virtio_cmdline.c time.c \
	mem.c buddy.c tag.c workload.c wl_hog.c wl_dirty.c wl_kv.c selftest.c \
	virtio_mmio.c virtqueue.c balloon.c balloon_hint.c
GUEST_OBJS := $(GUEST_BUILD)/entry.o $(GUEST_C_SRCS:%.c=$(GUEST_BUILD)/%.o)

$(GUEST_ELF): $(GUEST_OBJS) $(GUEST_SRC)/guest.ld
	@mkdir -p $(dir $@)
	$(GUEST_LD) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJS)

$(GUEST_BUILD)/%.o: $(GUEST_SRC)/%.c $(GUEST_DIR)/guest.mk
	@mkdir -p $(GUEST_BUILD)
	$(GUEST_CC) $(GUEST_CPPFLAGS) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_BUILD)/%.o: $(GUEST_SRC)/%.S $(GUEST_DIR)/guest.mk
	@mkdir -p $(GUEST_BUILD)
	$(GUEST_CC) $(GUEST_CPPFLAGS) -c -o $@ $<

-include $(GUEST_OBJS:.o=.d)

.PHONY: guest guest-clean
guest: $(GUEST_ELF)
guest-clean:
	rm -rf $(GUEST_BUILD) $(GUEST_ELF)

.DEFAULT_GOAL := $(GUEST_SAVED_GOAL)
