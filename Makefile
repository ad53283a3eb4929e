# invsync — top-level build.
#
#   make            build both services, tools and tests (build/)
#   make test       unit tests (cmocka) + integration tests (embedded Kafka,
#                   then the reliability suite against real Apache Kafka)
#   make demo       install, build, run the end-to-end demo (deploy/demo.sh)
#   make asan       unit tests under AddressSanitizer + UBSan (build-asan/)
#   make bench      benchmarks (not part of make test)
#   make deps       install missing Debian packages (deploy/install-deps.sh)
#
# Sources are found by wildcard: a new .c file in common/, mes-producer/ or
# erp-consumer/ needs no edit here. Each service's main.c is its only file
# with main(); everything else of a service is linked into the unit tests.

BUILD   ?= build
CC      ?= cc
PKGS    := rdkafka libprotobuf-c libmicrohttpd sqlite3 jansson yaml-0.1 libcurl libcrypto
OPT     ?= -O2 -g
SAN     ?=
CFLAGS  := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE $(OPT) $(SAN) \
           -I common -I erp-consumer -I mes-producer -I $(BUILD)/gen \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
TEST_LDLIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

PROTO_C   := $(BUILD)/gen/invsync.pb-c.c
PROTO_H   := $(BUILD)/gen/invsync.pb-c.h

COMMON_SRC   := $(wildcard common/*.c)
PRODUCER_SRC := $(filter-out mes-producer/main.c,$(wildcard mes-producer/*.c))
CONSUMER_SRC := $(filter-out erp-consumer/main.c,$(wildcard erp-consumer/*.c))
TOOL_SRC     := $(wildcard test/tools/*.c)
UNIT_SRC     := $(wildcard test/unit/test_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

COMMON_OBJ   := $(call obj,$(COMMON_SRC)) $(BUILD)/obj/gen/invsync.pb-c.o
PRODUCER_OBJ := $(call obj,$(PRODUCER_SRC))
CONSUMER_OBJ := $(call obj,$(CONSUMER_SRC)) $(BUILD)/obj/gen/status_page_html.o

BINS  := $(BUILD)/bin/mes-producer $(BUILD)/bin/erp-consumer \
         $(patsubst test/tools/%.c,$(BUILD)/bin/%,$(TOOL_SRC))
UNITS := $(patsubst test/unit/%.c,$(BUILD)/test/%,$(UNIT_SRC))

.PHONY: all deps test unit integration reliability demo asan bench clean format check-format
# Keep objects that pattern rules chain through (no rebuild on every run).
.SECONDARY:
all: $(BINS) $(UNITS)

deps:
	@bash deploy/install-deps.sh

$(PROTO_C) $(PROTO_H): proto/invsync.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen proto/invsync.proto

$(BUILD)/obj/gen/invsync.pb-c.o: $(PROTO_C)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Werror,$(CFLAGS)) -MMD -MP -c $< -o $@

# The status page ships inside erp-consumer: the HTML file as a byte array.
$(BUILD)/gen/status_page_html.c: erp-consumer/status_page.html
	@mkdir -p $(dir $@)
	{ echo '/* generated from erp-consumer/status_page.html: do not edit */'; \
	  echo '#include <stddef.h>'; \
	  echo 'const unsigned char status_page_html[] = {'; \
	  od -An -v -tx1 $< | sed -E 's/ ([0-9a-f]{2})/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t status_page_html_len = sizeof(status_page_html);'; } > $@

$(BUILD)/obj/gen/status_page_html.o: $(BUILD)/gen/status_page_html.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/lib/libcommon.a: $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/lib/libproducer.a: $(PRODUCER_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^ $(if $^,,$(BUILD)/obj/gen/invsync.pb-c.o)
$(BUILD)/lib/libconsumer.a: $(CONSUMER_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^ $(if $^,,$(BUILD)/obj/gen/invsync.pb-c.o)

LIBS := $(BUILD)/lib/libproducer.a $(BUILD)/lib/libconsumer.a $(BUILD)/lib/libcommon.a

$(BUILD)/bin/mes-producer: $(BUILD)/obj/mes-producer/main.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/bin/erp-consumer: $(BUILD)/obj/erp-consumer/main.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/bin/%: $(BUILD)/obj/test/tools/%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/test/%: $(BUILD)/obj/test/unit/%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDLIBS) $(TEST_LDLIBS) -o $@

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- tests ---------------------------------------------------------------
unit: $(UNITS)
	@bash test/run-unit.sh $(BUILD)/test

integration: all
	@bash test/run-integration.sh $(BUILD) embedded

reliability: all
	@bash test/run-integration.sh $(BUILD) reliability

test: deps
	@$(MAKE) --no-print-directory all
	@bash test/run-all.sh $(BUILD)

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" unit

demo: deps
	@$(MAKE) --no-print-directory all
	@bash deploy/demo.sh $(BUILD)

bench: deps
	@$(MAKE) --no-print-directory all
	@bash test/bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')
check-format:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan
