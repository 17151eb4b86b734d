// The system SQLite, seen with the session extension switched on.
// Debian's libsqlite3 is built with both options, but <sqlite3.h> declares the
// session API only when these macros are defined by the includer.
#ifndef UNDERSTUDY_SQLITE_SHIM_H
#define UNDERSTUDY_SQLITE_SHIM_H

#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>

// SQLITE_TRANSIENT is a cast macro Swift cannot import.
static inline sqlite3_destructor_type understudy_sqlite_transient(void) {
  return SQLITE_TRANSIENT;
}

// sqlite3_db_config is variadic; these are the calls we need.
static inline int understudy_db_config_int(sqlite3 *db, int op, int value) {
  int out = 0;
  return sqlite3_db_config(db, op, value, &out);
}

static inline int understudy_db_config_read(sqlite3 *db, int op, int *out) {
  return sqlite3_db_config(db, op, -1, out);
}

#endif
