/*
 * files_in.h: how many files a directory holds (dot files aside), for the
 * cmocka tests that check what an upload or a merge leaves behind.
 */
#ifndef SQLPRODD_FILES_IN_H
#define SQLPRODD_FILES_IN_H

#include <dirent.h>

/* 0 for a directory that does not exist. */
static inline int files_in(const char *directory)
{
    DIR *dir = opendir(directory);
    int count = 0;
    struct dirent *entry;
    while (dir && (entry = readdir(dir)))
        count += entry->d_name[0] != '.';
    if (dir)
        closedir(dir);
    return count;
}

#endif
