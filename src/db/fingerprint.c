/*
 * fingerprint.c: the schema digest and the row counts of a database
 * (fingerprint.h).
 */
#include "db/fingerprint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int fingerprint_schema(sqlite3 *connection, char hex[IO_SHA256_HEX], int64_t *objects,
                       struct error *err)
{
    sqlite3_stmt *statement = NULL;
    struct io_sha256 hash = {0};
    int rc = sqlite3_prepare_v2(connection,
                                "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema"
                                " ORDER BY type, name",
                                -1, &statement, NULL);
    if (rc != SQLITE_OK || io_sha256_begin(&hash) != 0) {
        rc = error_set(err, -EIO, "cannot read the schema: %s", sqlite3_errmsg(connection));
        goto out;
    }
    *objects = 0;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        for (int column = 0; column < 4; column++) {
            const unsigned char *text = sqlite3_column_text(statement, column);
            io_sha256_update(&hash, text, (size_t)sqlite3_column_bytes(statement, column) + 1);
        }
        (*objects)++;
    }
    if (rc != SQLITE_DONE) {
        rc = error_set(err, -EIO, "cannot read the schema: %s", sqlite3_errmsg(connection));
        goto out;
    }
    io_sha256_end(&hash, hex);
    rc = 0;
out:
    sqlite3_finalize(statement);
    io_sha256_discard(&hash);
    return rc;
}

/* count(*) of one table; SQLite walks its smallest b-tree. */
static int fingerprint_count(sqlite3 *connection, const char *table, int64_t *rows,
                             struct error *err)
{
    char *sql = sqlite3_mprintf("SELECT count(*) FROM main.\"%w\"", table);
    sqlite3_stmt *statement = NULL;
    int rc = sql ? sqlite3_prepare_v2(connection, sql, -1, &statement, NULL) : SQLITE_NOMEM;
    if (rc == SQLITE_OK && (rc = sqlite3_step(statement)) == SQLITE_ROW) {
        *rows = sqlite3_column_int64(statement, 0);
        rc = 0;
    } else {
        rc = error_set(err, -EIO, "cannot count the rows of table \"%s\": %s", table,
                       sqlite3_errmsg(connection));
    }
    sqlite3_finalize(statement);
    sqlite3_free(sql);
    return rc;
}

int fingerprint_take(sqlite3 *connection, struct fingerprint *out, struct error *err)
{
    sqlite3_stmt *statement = NULL;
    struct io_sha256 hash = {0};
    memset(out, 0, sizeof *out);
    int rc = fingerprint_schema(connection, out->schema_sha256, &out->objects, err);
    if (rc != 0)
        return rc;
    /* Virtual tables are left out: counting one runs its module (which may
     * not be loaded here); their shadow tables are ordinary and counted. */
    rc = sqlite3_prepare_v2(connection,
                            "SELECT name FROM sqlite_schema WHERE type = 'table'"
                            " AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%'"
                            " ORDER BY name",
                            -1, &statement, NULL);
    if (rc != SQLITE_OK || io_sha256_begin(&hash) != 0) {
        rc = error_set(err, -EIO, "cannot list the tables: %s", sqlite3_errmsg(connection));
        goto out;
    }
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(statement, 0);
        int64_t rows = 0;
        if ((rc = fingerprint_count(connection, name ? name : "", &rows, err)) != 0)
            goto out;
        char line[32];
        int length = snprintf(line, sizeof line, "%" PRId64, rows);
        io_sha256_update(&hash, name, strlen(name ? name : "") + 1);
        io_sha256_update(&hash, line, (size_t)length + 1);
        out->tables++;
        out->rows += rows;
    }
    if (rc != SQLITE_DONE) {
        rc = error_set(err, -EIO, "cannot list the tables: %s", sqlite3_errmsg(connection));
        goto out;
    }
    io_sha256_end(&hash, out->rows_sha256);
    rc = 0;
out:
    sqlite3_finalize(statement);
    io_sha256_discard(&hash);
    return rc;
}

bool fingerprint_matches(const struct fingerprint *recorded, const struct fingerprint *restored,
                         char *why, size_t why_size)
{
    why[0] = '\0';
    if (recorded->schema_sha256[0] &&
        strcmp(recorded->schema_sha256, restored->schema_sha256) != 0) {
        snprintf(why, why_size,
                 "the schema differs from the one recorded at backup time (sha256 %.12s..., "
                 "restored %.12s...)",
                 recorded->schema_sha256, restored->schema_sha256);
        return false;
    }
    if (recorded->rows_sha256[0] && strcmp(recorded->rows_sha256, restored->rows_sha256) != 0) {
        snprintf(why, why_size,
                 "the row counts differ from those recorded at backup time (%" PRId64
                 " rows in %" PRId64 " tables recorded, %" PRId64 " in %" PRId64 " restored)",
                 recorded->rows, recorded->tables, restored->rows, restored->tables);
        return false;
    }
    return true;
}
