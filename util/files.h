/* Whole-file reads and crash-safe whole-file writes, for the files the
 * proxy keeps (config rewrite, ACL file, functions-file). */
#ifndef EVALPROXY_FILES_H
#define EVALPROXY_FILES_H

#include <stddef.h>

/* The file's bytes, NUL-terminated (len excludes the NUL); NULL with errno
 * set when it cannot be read. */
char *file_read_all(const char *path, size_t *len);

/* Writes a temporary file next to path, syncs it and renames it over path,
 * so a crash leaves the old or the new file, never half of one. 0, or -1
 * with errno set (the temporary file removed). */
int file_write_atomic(const char *path, const void *data, size_t len);

#endif
