/*
 * A hypervisor for the xen tests: what libxenctrl and libxenstore answer
 * libxenlight, read from a text file instead of Xen.
 *
 * Loaded ahead of the real libxenctrl and libxenstore (LD_PRELOAD, or dlopen
 * with RTLD_GLOBAL before libxenlight), it defines only the calls libxl makes
 * below libxl_ctx_alloc, libxl_domain_info, libxl_list_domain and
 * libxl_domid_to_name; every libxl_* function stays Debian's.
 *
 * The file named by $DOMDATA_XEN_SHIM_DOMAINS holds one running domain per
 * line, "domid uuid [name]", in any order; blank lines and lines starting with
 * '#' are ignored. It is read again on every call, so a test creates and
 * destroys domains by rewriting it (atomically: write, then rename). Without
 * the variable, or without the file, there is no hypervisor:
 * xc_interface_open fails (errno ENOENT) as on a machine that is not a Xen
 * host, and a call made after the file went away fails with the error of
 * opening it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenctrl.h>
#include <xenstore.h>

#define ENV "DOMDATA_XEN_SHIM_DOMAINS"
#define MAX_DOMAINS 4096

struct domain {
    uint32_t domid;
    xen_domain_handle_t uuid;
    char name[64];
};

/* Handles are never dereferenced by libxl: any distinct address will do. */
static char xc_handle, xs_handle;

static int parse_uuid(const char *text, xen_domain_handle_t uuid)
{
    unsigned int b[16];
    int n = sscanf(text, "%2x%2x%2x%2x-%2x%2x-%2x%2x-%2x%2x-%2x%2x%2x%2x%2x%2x",
                   &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8],
                   &b[9], &b[10], &b[11], &b[12], &b[13], &b[14], &b[15]);
    if (n != 16 || strlen(text) != 36)
        return -1;
    for (int i = 0; i < 16; i++)
        uuid[i] = (uint8_t)b[i];
    return 0;
}

static int by_domid(const void *a, const void *b)
{
    uint32_t x = ((const struct domain *)a)->domid, y = ((const struct domain *)b)->domid;
    return (x > y) - (x < y);
}

/* The running domains, sorted by domid, in a malloc'd array (calls come
 * from several threads); -1 with errno if the file cannot be read. */
static int load(struct domain **domains)
{
    const char *path = getenv(ENV);
    char line[256], uuid[64];
    struct domain *out;
    int n = 0;
    FILE *f;

    if (!path) {
        errno = ENOENT;
        return -1;
    }
    f = fopen(path, "re");
    if (!f)
        return -1;
    out = calloc(MAX_DOMAINS, sizeof(*out));
    if (!out) {
        fclose(f);
        errno = ENOMEM;
        return -1;
    }
    while (n < MAX_DOMAINS && fgets(line, sizeof(line), f)) {
        struct domain *d = &out[n];
        int fields;
        d->name[0] = '\0';
        if (line[0] == '#' || line[0] == '\n')
            continue;
        fields = sscanf(line, "%u %63s %63s", &d->domid, uuid, d->name);
        if (fields >= 2 && parse_uuid(uuid, d->uuid) == 0)
            n++;
    }
    fclose(f);
    qsort(out, n, sizeof(*out), by_domid);
    *domains = out;
    return n;
}

static void fill(const struct domain *d, xc_domaininfo_t *info)
{
    memset(info, 0, sizeof(*info));
    info->domain = (domid_t)d->domid;
    info->flags = XEN_DOMINF_running;
    info->tot_pages = info->max_pages = 256;
    info->max_vcpu_id = 0;
    info->nr_online_vcpus = 1;
    memcpy(info->handle, d->uuid, sizeof(info->handle));
}

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    const char *path = getenv(ENV);

    (void)logger, (void)dombuild_logger, (void)open_flags;
    if (!path) {
        errno = ENOENT;
        return NULL;
    }
    if (access(path, R_OK) != 0)
        return NULL;
    return (xc_interface *)&xc_handle;
}

int xc_interface_close(xc_interface *xch)
{
    (void)xch;
    return 0;
}

int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains,
                          xc_domaininfo_t *info)
{
    struct domain *domains;
    int n = load(&domains), found = 0;

    (void)xch;
    if (n < 0)
        return -1;
    first_domain = (domid_t)first_domain; /* Xen's sysctl keeps 16 bits */
    for (int i = 0; i < n && (unsigned int)found < max_domains; i++)
        if (domains[i].domid >= first_domain)
            fill(&domains[i], &info[found++]);
    free(domains);
    return found;
}

/* libxl 4.18 and later look one domain up with this call (not in 4.17's headers). */
int xc_domain_getinfo_single(xc_interface *xch, uint32_t domid, xc_domaininfo_t *info);

int xc_domain_getinfo_single(xc_interface *xch, uint32_t domid, xc_domaininfo_t *info)
{
    struct domain *domains;
    int n = load(&domains), found = -1;

    (void)xch;
    if (n < 0)
        return -1;
    domid = (domid_t)domid; /* Xen's domctl keeps 16 bits */
    for (int i = 0; i < n && found < 0; i++)
        if (domains[i].domid == domid) {
            fill(&domains[i], info);
            found = 0;
        }
    free(domains);
    if (found < 0)
        errno = ESRCH;
    return found;
}

/* A hypervisor without FLASK (XSM) answers every label query so. */
int xc_flask_sid_to_context(xc_interface *xch, int sid, char *buf, uint32_t size)
{
    (void)xch, (void)sid, (void)buf, (void)size;
    errno = ENOSYS;
    return -1;
}

struct xs_handle *xs_open(unsigned long flags)
{
    (void)flags;
    return (struct xs_handle *)&xs_handle;
}

void xs_close(struct xs_handle *xsh)
{
    (void)xsh;
}

/* Only /local/domain/<domid>/name: what libxl_domid_to_name reads. */
void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path, unsigned int *len)
{
    struct domain *domains;
    char *name = NULL;
    unsigned int domid;
    int end = 0, n;

    (void)h, (void)t;
    if (sscanf(path, "/local/domain/%u/name%n", &domid, &end) != 1 || path[end] != '\0') {
        errno = ENOENT;
        return NULL;
    }
    n = load(&domains);
    if (n < 0)
        return NULL;
    for (int i = 0; i < n && !name; i++)
        if (domains[i].domid == domid && domains[i].name[0])
            name = strdup(domains[i].name);
    free(domains);
    if (!name) {
        errno = ENOENT;
        return NULL;
    }
    if (len)
        *len = (unsigned int)strlen(name);
    return name;
}
