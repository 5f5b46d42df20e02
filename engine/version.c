/* version.c: versions of the libraries the extension library links. */
#include "sbot.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdio.h>

void sbot_print_versions(void)
{
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    printf("libcurl %s (%s)\n", cv->version, cv->ssl_version ? cv->ssl_version : "no TLS");
    printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
}
