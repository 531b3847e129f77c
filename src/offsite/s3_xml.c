/*
 * s3_xml.c: the few XML documents S3 speaks to a backup target: error
 * bodies, InitiateMultipartUploadResult, ListObjectsV2 pages, and the
 * CompleteMultipartUpload request. Parsed with libxml2, never from the
 * network (XML_PARSE_NONET), matched by local name so any namespace works.
 * Not for sending anything: s3_http.c.
 */
#include <errno.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "offsite/s3.h"

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_initialize(void)
{
    xmlInitParser();
}

void s3_xml_init(void)
{
    pthread_once(&xml_once, xml_initialize);
}

static xmlDocPtr xml_parse(const char *xml, size_t size)
{
    if (!xml || size == 0 || size > INT32_MAX)
        return NULL;
    s3_xml_init();
    return xmlReadMemory(xml, (int)size, NULL, NULL,
                         XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR |
                             XML_PARSE_NOWARNING);
}

static bool xml_is(const xmlNode *node, const char *name)
{
    return node && node->type == XML_ELEMENT_NODE &&
           xmlStrcmp(node->name, (const xmlChar *)name) == 0;
}

static const xmlNode *xml_child(const xmlNode *parent, const char *name)
{
    for (const xmlNode *child = parent ? parent->children : NULL; child; child = child->next)
        if (xml_is(child, name))
            return child;
    return NULL;
}

/* The text of parent's child `name` into out ("" when absent); false when absent. */
static bool xml_child_text(const xmlNode *parent, const char *name, char *out, size_t size)
{
    const xmlNode *child = xml_child(parent, name);
    xmlChar *text = child ? xmlNodeGetContent(child) : NULL;
    snprintf(out, size, "%s", text ? (const char *)text : "");
    xmlFree(text);
    return child != NULL;
}

int s3_xml_parse_error(const char *xml, size_t size, struct s3_error_document *out)
{
    memset(out, 0, sizeof *out);
    xmlDocPtr document = xml_parse(xml, size);
    const xmlNode *root = document ? xmlDocGetRootElement(document) : NULL;
    int rc = -EPROTO;
    if (xml_is(root, "Error")) {
        xml_child_text(root, "Code", out->code, sizeof out->code);
        xml_child_text(root, "Message", out->message, sizeof out->message);
        xml_child_text(root, "Region", out->region, sizeof out->region);
        rc = 0;
    }
    xmlFreeDoc(document);
    return rc;
}

int s3_xml_parse_upload_id(const char *xml, size_t size, char *upload_id, size_t upload_id_size)
{
    xmlDocPtr document = xml_parse(xml, size);
    const xmlNode *root = document ? xmlDocGetRootElement(document) : NULL;
    int rc = -EPROTO;
    if (xml_is(root, "InitiateMultipartUploadResult") &&
        xml_child_text(root, "UploadId", upload_id, upload_id_size) && upload_id[0] &&
        strlen(upload_id) < upload_id_size - 1)
        rc = 0;
    xmlFreeDoc(document);
    return rc;
}

/* "2009-10-12T17:50:30.000Z" -> seconds since the epoch (0 when unreadable). */
static time_t parse_iso8601(const char *text)
{
    struct tm tm = {0};
    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

int s3_xml_parse_listing(const char *xml, size_t size, const char *strip,
                         struct target_listing *out, bool *truncated, char **next_token,
                         struct error *err)
{
    xmlDocPtr document = xml_parse(xml, size);
    const xmlNode *root = document ? xmlDocGetRootElement(document) : NULL;
    size_t strip_length = strlen(strip);
    char text[1100];
    int rc = 0;
    *truncated = false;
    *next_token = NULL;
    if (!xml_is(root, "ListBucketResult")) {
        rc = error_set(err, -EPROTO, "the listing is not a ListBucketResult document");
        goto out;
    }
    for (const xmlNode *node = root->children; node && rc == 0; node = node->next) {
        if (!xml_is(node, "Contents"))
            continue;
        xmlChar *key = NULL;
        const xmlNode *key_node = xml_child(node, "Key");
        if (key_node)
            key = xmlNodeGetContent(key_node);
        if (key && strncmp((const char *)key, strip, strip_length) == 0) {
            xml_child_text(node, "Size", text, sizeof text);
            int64_t object_size = strtoll(text, NULL, 10);
            xml_child_text(node, "LastModified", text, sizeof text);
            rc = target_listing_add(out, (const char *)key + strip_length, object_size,
                                    parse_iso8601(text), err);
        }
        xmlFree(key);
    }
    if (rc != 0)
        goto out;
    xml_child_text(root, "IsTruncated", text, sizeof text);
    *truncated = strcmp(text, "true") == 0;
    const xmlNode *token = xml_child(root, "NextContinuationToken");
    if (*truncated) {
        xmlChar *value = token ? xmlNodeGetContent(token) : NULL;
        if (!value || !*value) {
            xmlFree(value);
            rc = error_set(err, -EPROTO, "the listing is truncated but has no continuation token");
            goto out;
        }
        *next_token = strdup((const char *)value);
        xmlFree(value);
        if (!*next_token)
            rc = error_set(err, -ENOMEM, "out of memory");
    }
out:
    xmlFreeDoc(document);
    return rc;
}

static void append(char **buffer, size_t *length, size_t *capacity, bool *failed, const char *text)
{
    size_t size = strlen(text);
    if (*failed)
        return;
    if (*length + size + 1 > *capacity) {
        size_t grown_capacity = *capacity ? *capacity * 2 : 4096;
        while (grown_capacity < *length + size + 1)
            grown_capacity *= 2;
        char *grown = realloc(*buffer, grown_capacity);
        if (!grown) {
            *failed = true;
            return;
        }
        *buffer = grown;
        *capacity = grown_capacity;
    }
    memcpy(*buffer + *length, text, size + 1);
    *length += size;
}

int s3_xml_complete_body(char (*etags)[128], size_t count, char **out, size_t *out_size)
{
    char *buffer = NULL;
    size_t length = 0, capacity = 0;
    bool failed = false;
    char line[64];
    append(&buffer, &length, &capacity, &failed,
           "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (size_t i = 0; i < count; i++) {
        snprintf(line, sizeof line, "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
        append(&buffer, &length, &capacity, &failed, line);
        /* ETags are quoted hex; escape the XML specials all the same. */
        for (const char *p = etags[i]; *p; p++) {
            char single[2] = {*p, '\0'};
            append(&buffer, &length, &capacity, &failed,
                   *p == '&'   ? "&amp;"
                   : *p == '<' ? "&lt;"
                   : *p == '>' ? "&gt;"
                               : single);
        }
        append(&buffer, &length, &capacity, &failed, "</ETag></Part>");
    }
    append(&buffer, &length, &capacity, &failed, "</CompleteMultipartUpload>");
    if (failed) {
        free(buffer);
        return -ENOMEM;
    }
    *out = buffer;
    *out_size = length;
    return 0;
}
