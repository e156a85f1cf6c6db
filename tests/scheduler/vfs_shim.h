/*
 * vfs_shim.h: a SQLite VFS over the default one for the scheduler's unit
 * tests: it counts the syncs of write-ahead logs and can make them fail, to
 * see db_sync_now and sched_sync from below. shim_install makes it the
 * default VFS (databases opened after it use it); shim_remove puts the
 * default back. Header-only, like harness.h.
 */
#ifndef FT_TEST_VFS_SHIM_H
#define FT_TEST_VFS_SHIM_H

#include <sqlite3.h>
#include <stdbool.h>

typedef struct {
    sqlite3_file base;  /* pMethods = &shim_io */
    sqlite3_file *real; /* the default VFS's file, right after this struct */
    bool wal;
} shim_file_t;

static sqlite3_vfs *shim_base;
static sqlite3_vfs shim_vfs;
static int shim_wal_syncs, shim_fail_wal_sync;

#define REAL(f) (((shim_file_t *)(f))->real)
#define FWD(f, m, ...) REAL(f)->pMethods->m(REAL(f), __VA_ARGS__)

static int s_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}
static int s_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
    return FWD(f, xRead, b, n, o);
}
static int s_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
    return FWD(f, xWrite, b, n, o);
}
static int s_truncate(sqlite3_file *f, sqlite3_int64 n)
{
    return FWD(f, xTruncate, n);
}
static int s_sync(sqlite3_file *f, int flags)
{
    if (((shim_file_t *)f)->wal) {
        if (shim_fail_wal_sync)
            return SQLITE_IOERR_FSYNC;
        shim_wal_syncs++;
    }
    return FWD(f, xSync, flags);
}
static int s_size(sqlite3_file *f, sqlite3_int64 *n)
{
    return FWD(f, xFileSize, n);
}
static int s_lock(sqlite3_file *f, int l)
{
    return FWD(f, xLock, l);
}
static int s_unlock(sqlite3_file *f, int l)
{
    return FWD(f, xUnlock, l);
}
static int s_check(sqlite3_file *f, int *out)
{
    return FWD(f, xCheckReservedLock, out);
}
static int s_fcntl(sqlite3_file *f, int op, void *arg)
{
    return FWD(f, xFileControl, op, arg);
}
static int s_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int s_devchar(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int s_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
    return FWD(f, xShmMap, pg, sz, ext, pp);
}
static int s_shmlock(sqlite3_file *f, int off, int n, int flags)
{
    return FWD(f, xShmLock, off, n, flags);
}
static void s_shmbarrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int s_shmunmap(sqlite3_file *f, int del)
{
    return FWD(f, xShmUnmap, del);
}
static int s_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp)
{
    return FWD(f, xFetch, o, n, pp);
}
static int s_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
    return FWD(f, xUnfetch, o, p);
}

static const sqlite3_io_methods shim_io = {
    3,         s_close,      s_read,     s_write, s_truncate, s_sync,    s_size,
    s_lock,    s_unlock,     s_check,    s_fcntl, s_sector,   s_devchar, s_shmmap,
    s_shmlock, s_shmbarrier, s_shmunmap, s_fetch, s_unfetch,
};

static int s_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
    shim_file_t *p = (shim_file_t *)f;
    int rc;

    (void)vfs;
    p->real = (sqlite3_file *)(p + 1);
    p->wal = (flags & SQLITE_OPEN_WAL) != 0;
    rc = shim_base->xOpen(shim_base, name, p->real, flags, out);
    p->base.pMethods = p->real->pMethods ? &shim_io : NULL;
    return rc;
}

static void shim_install(void)
{
    shim_base = sqlite3_vfs_find(NULL);
    shim_vfs = *shim_base;
    shim_vfs.zName = "ft-test-shim";
    shim_vfs.szOsFile = (int)sizeof(shim_file_t) + shim_base->szOsFile;
    shim_vfs.xOpen = s_open;
    shim_vfs.pNext = NULL;
    sqlite3_vfs_register(&shim_vfs, 1);
}

static void shim_remove(void)
{
    sqlite3_vfs_unregister(&shim_vfs);
    sqlite3_vfs_register(shim_base, 1);
}

#endif
