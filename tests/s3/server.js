'use strict';
/*
 * tests/s3/server.js: an S3-compatible server for sqlprodd's tests, on 127.0.0.1 only.
 *
 * s3rver 3.7 stores objects faithfully but accepts any Signature V4 (its
 * authentication middleware says V4 is unimplemented), so it cannot catch a
 * wrong signer. This front recomputes every request's signature with AWS's own
 * signer (@smithy/signature-v4, what the AWS SDK for JavaScript uses) and
 * answers 403 SignatureDoesNotMatch on a mismatch; it checks that
 * x-amz-content-sha256 is the body's SHA-256 and that Content-MD5 /
 * x-amz-checksum-sha256 match the body (s3rver checks neither); only then does
 * it proxy the request to s3rver. It also injects faults on demand (errors,
 * dropped connections, delays) and records every request, so tests can prove
 * what the client sent and how often.
 *
 * Not for anything but tests: no TLS, one set of credentials, bodies buffered
 * in memory.
 *
 * Usage: node server.js [--port N] [--bucket NAME]... [--access-key ID]
 *          [--secret-key SECRET] [--session-token TOKEN] [--region REGION]
 *          [--directory DIR] [--allow-unsigned-payload] [--verbose]
 *          [--fail N [--fail-status 503] [--fail-code SlowDown]]
 *          [--tls-cert PEM --tls-key PEM] [--keep-alive-ms 30000]
 * Prints "s3 test server listening on http://127.0.0.1:PORT" (https with
 * --tls-cert) on stdout once ready. Virtual-hosted requests work with
 * Host: BUCKET.localhost:PORT.
 *
 * Admin endpoints (no signature; bucket names cannot contain "_"):
 *   POST   /__admin/faults    JSON {mode: "error"|"drop"|"delay"|"ignore-range", count: 1,
 *                            status: 503, code: "SlowDown", when: "request"|"response",
 *                            ms: 1000, method: "PUT", query: "partNumber", path: "substr"}
 *   DELETE /__admin/faults    clears pending faults
 *   GET    /__admin/requests  JSON list of the requests seen so far
 *   DELETE /__admin/requests  clears that list
 */

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const https = require('https');
const os = require('os');
const path = require('path');
const { fork } = require('child_process');

const DEFAULTS = {
    port: 0,
    buckets: [],
    accessKey: 'SQLPRODDTESTACCESSKEY',
    secretKey: 'sqlprodd/Test+Secret/Key0123456789abcdefXYZ',
    sessionToken: null,
    region: 'us-east-1',
    directory: null,
    allowUnsignedPayload: false,
    verbose: false,
    fail: 0,
    failStatus: 503,
    failCode: 'SlowDown',
    tlsCert: null,
    tlsKey: null,
    keepAliveMs: 30000,
    child: false,
};
const DEFAULT_BUCKET = 'sqlprodd-test';
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const MAX_SKEW_MS = 15 * 60 * 1000;

function parseArguments(argv) {
    const options = { ...DEFAULTS, buckets: [] };
    const takesValue = {
        '--port': (v) => (options.port = Number(v)),
        '--bucket': (v) => options.buckets.push(v),
        '--access-key': (v) => (options.accessKey = v),
        '--secret-key': (v) => (options.secretKey = v),
        '--session-token': (v) => (options.sessionToken = v),
        '--region': (v) => (options.region = v),
        '--directory': (v) => (options.directory = v),
        '--fail': (v) => (options.fail = Number(v)),
        '--fail-status': (v) => (options.failStatus = Number(v)),
        '--fail-code': (v) => (options.failCode = v),
        '--tls-cert': (v) => (options.tlsCert = v),
        '--tls-key': (v) => (options.tlsKey = v),
        '--keep-alive-ms': (v) => (options.keepAliveMs = Number(v)),
    };
    for (let i = 0; i < argv.length; i++) {
        const argument = argv[i];
        if (takesValue[argument]) {
            if (i + 1 >= argv.length) {
                throw new Error(`${argument} needs a value`);
            }
            takesValue[argument](argv[++i]);
        } else if (argument === '--allow-unsigned-payload') {
            options.allowUnsignedPayload = true;
        } else if (argument === '--verbose') {
            options.verbose = true;
        } else if (argument === '--child') {
            options.child = true;
        } else {
            throw new Error(`unknown argument ${argument}`);
        }
    }
    if (options.buckets.length === 0) {
        options.buckets.push(DEFAULT_BUCKET);
    }
    return options;
}

/*
 * The s3rver half. It runs in a child process because its paged listings use
 * DES, which Node 17+ only has with --openssl-legacy-provider; the child exits
 * when its parent goes away (the IPC channel closes even on SIGKILL).
 */
async function runStore(options) {
    const S3rver = require('s3rver');
    const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account');
    // s3rver looks the key up (and then accepts any V4 signature): register ours.
    DUMMY_ACCOUNT.createKeyPair(options.accessKey, options.secretKey);
    const store = new S3rver({
        address: '127.0.0.1',
        port: 0,
        silent: true,
        directory: options.directory,
        vhostBuckets: false,
        configureBuckets: options.buckets.map((name) => ({ name, configs: [] })),
    });
    process.on('disconnect', () => process.exit(0));
    const address = await store.run();
    process.send({ port: address.port });
}

function startStore(options) {
    return new Promise((resolve, reject) => {
        // The settings travel in the environment, not argv, so ps shows no secret.
        const settings = {
            directory: options.directory,
            accessKey: options.accessKey,
            secretKey: options.secretKey,
            buckets: options.buckets,
        };
        const child = fork(__filename, ['--child'], {
            execArgv: ['--openssl-legacy-provider'],
            stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
            env: { ...process.env, SQLPRODD_S3_STORE: JSON.stringify(settings) },
        });
        child.once('message', (message) => resolve({ child, port: message.port }));
        child.once('exit', (code, signal) => {
            reject(new Error(`s3rver exited (${code ?? signal})`));
            if (!shuttingDown) {
                console.error(`s3 test server: s3rver exited unexpectedly (${code ?? signal})`);
                process.exit(1);
            }
        });
    });
}

let shuttingDown = false;

/* S3's URI encoding: everything but A-Z a-z 0-9 - _ . ~ is %XX (uppercase). */
function encodeRfc3986(text) {
    return encodeURIComponent(text).replace(/[!'()*]/g,
        (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

function decodeLoosely(text) {
    try {
        return decodeURIComponent(text);
    } catch (error) {
        return null;
    }
}

/*
 * The canonical URI as S3 computes it: each segment decoded, then encoded
 * once with the strict rules. A client that sends "+" or "(" raw but signs
 * them encoded (or the reverse) fails here, as it would against AWS.
 */
function canonicalPath(rawPath) {
    const segments = rawPath.split('/').map(decodeLoosely);
    if (segments.some((s) => s === null)) {
        return null;
    }
    return segments.map(encodeRfc3986).join('/');
}

function parseQuery(rawQuery) {
    const query = {};
    if (!rawQuery) {
        return query;
    }
    for (const pair of rawQuery.split('&')) {
        if (pair === '') {
            continue;
        }
        const at = pair.indexOf('=');
        const name = decodeLoosely(at < 0 ? pair : pair.slice(0, at));
        const value = decodeLoosely(at < 0 ? '' : pair.slice(at + 1));
        if (name === null || value === null) {
            return null;
        }
        if (name in query) {
            query[name] = [].concat(query[name], value);
        } else {
            query[name] = value;
        }
    }
    return query;
}

function parseAuthorization(header) {
    const match = /^AWS4-HMAC-SHA256 (.*)$/.exec(header || '');
    if (!match) {
        return null;
    }
    const fields = {};
    for (const part of match[1].split(',')) {
        const at = part.indexOf('=');
        if (at > 0) {
            fields[part.slice(0, at).trim()] = part.slice(at + 1).trim();
        }
    }
    if (!fields.Credential || !fields.SignedHeaders || !fields.Signature) {
        return null;
    }
    const scope = fields.Credential.split('/');
    if (scope.length !== 5) {
        return null;
    }
    return {
        accessKey: scope[0],
        date: scope[1],
        region: scope[2],
        service: scope[3],
        terminator: scope[4],
        signedHeaders: fields.SignedHeaders.split(';'),
        signature: fields.Signature,
    };
}

function parseAmzDate(text) {
    const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text || '');
    if (!match) {
        return null;
    }
    const [, y, mo, d, h, mi, s] = match.map(Number);
    return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}

class S3Failure extends Error {
    constructor(status, code, message) {
        super(message);
        this.status = status;
        this.code = code;
    }
}

/*
 * Recomputes the request's signature with AWS's signer over the headers the
 * client said it signed, and compares. Returns nothing or throws S3Failure.
 */
async function verifySignature(options, request, rawPath, rawQuery, hostHeader) {
    const { SignatureV4 } = require('@smithy/signature-v4');
    const { Sha256 } = require('@aws-crypto/sha256-js');

    const authorization = parseAuthorization(request.headers.authorization);
    if (!request.headers.authorization) {
        throw new S3Failure(403, 'AccessDenied', 'Anonymous requests are not allowed by this server.');
    }
    if (!authorization) {
        throw new S3Failure(400, 'AuthorizationHeaderMalformed',
            'The authorization header is malformed; it must be AWS4-HMAC-SHA256 ' +
            'Credential=..., SignedHeaders=..., Signature=...');
    }
    if (authorization.accessKey !== options.accessKey) {
        throw new S3Failure(403, 'InvalidAccessKeyId',
            'The AWS Access Key Id you provided does not exist in our records.');
    }
    if (authorization.region !== options.region || authorization.service !== 's3' ||
        authorization.terminator !== 'aws4_request') {
        throw new S3Failure(400, 'AuthorizationHeaderMalformed',
            `The authorization header is malformed; the credential scope ` +
            `${authorization.region}/${authorization.service} is wrong; expecting ` +
            `'${options.region}/s3'`);
    }
    const amzDate = request.headers['x-amz-date'];
    const signingDate = parseAmzDate(amzDate);
    if (!signingDate || amzDate.slice(0, 8) !== authorization.date) {
        throw new S3Failure(403, 'AccessDenied', 'x-amz-date is missing, malformed or does not match the credential scope.');
    }
    if (Math.abs(Date.now() - signingDate.getTime()) > MAX_SKEW_MS) {
        throw new S3Failure(403, 'RequestTimeTooSkewed',
            'The difference between the request time and the current time is too large.');
    }
    for (const required of ['host', 'x-amz-date', 'x-amz-content-sha256']) {
        if (!authorization.signedHeaders.includes(required)) {
            throw new S3Failure(403, 'AccessDenied', `The header ${required} must be signed.`);
        }
    }
    for (const name of Object.keys(request.headers)) {
        if (name.startsWith('x-amz-') && !authorization.signedHeaders.includes(name)) {
            throw new S3Failure(403, 'AccessDenied', `The header ${name} is present but not signed.`);
        }
    }
    const token = request.headers['x-amz-security-token'];
    if (options.sessionToken && token !== options.sessionToken) {
        throw new S3Failure(403, 'InvalidToken', 'The provided token is malformed or otherwise invalid.');
    }
    if (!options.sessionToken && token !== undefined) {
        throw new S3Failure(403, 'InvalidToken', 'This server expects no session token.');
    }

    const pathForSigning = canonicalPath(rawPath);
    const query = parseQuery(rawQuery);
    if (pathForSigning === null || query === null) {
        throw new S3Failure(400, 'InvalidURI', 'Couldn\'t parse the specified URI.');
    }
    const headers = {};
    for (const name of authorization.signedHeaders) {
        const value = name === 'host' ? hostHeader : request.headers[name];
        if (value === undefined) {
            throw new S3Failure(403, 'AccessDenied', `Signed header ${name} is missing.`);
        }
        headers[name] = Array.isArray(value) ? value.join(',') : String(value);
    }
    if (authorization.signedHeaders.includes('date')) {
        // The SDK's signer always regenerates Date; S3 clients sign x-amz-date instead.
        throw new S3Failure(403, 'AccessDenied', 'This server does not accept a signed Date header.');
    }
    const signer = new SignatureV4({
        credentials: {
            accessKeyId: options.accessKey,
            secretAccessKey: options.secretKey,
            sessionToken: options.sessionToken || undefined,
        },
        region: options.region,
        service: 's3',
        sha256: Sha256,
        uriEscapePath: false, // S3 signs the path encoded once, as computed above
        applyChecksum: true,
    });
    const signed = await signer.sign({
        method: request.method,
        protocol: 'http:',
        hostname: hostHeader.replace(/:\d+$/, ''),
        path: pathForSigning,
        query,
        headers,
    }, {
        signingDate,
        signableHeaders: new Set(authorization.signedHeaders),
    });
    const expected = /Signature=([0-9a-f]{64})/.exec(signed.headers.authorization)[1];
    const expectedHeaders = /SignedHeaders=([^,]*)/.exec(signed.headers.authorization)[1];
    if (expectedHeaders !== authorization.signedHeaders.join(';') || expected !== authorization.signature) {
        throw new S3Failure(403, 'SignatureDoesNotMatch',
            'The request signature we calculated does not match the signature you provided. ' +
            'Check your key and signing method.');
    }
}

/* x-amz-content-sha256, Content-MD5 and x-amz-checksum-sha256 against the body. */
function verifyBody(options, request, body) {
    const declared = request.headers['x-amz-content-sha256'];
    if (!declared) {
        throw new S3Failure(400, 'InvalidRequest',
            'Missing required header for this request: x-amz-content-sha256');
    }
    let payload = 'signed';
    if (declared === 'UNSIGNED-PAYLOAD') {
        if (!options.allowUnsignedPayload) {
            throw new S3Failure(400, 'InvalidRequest', 'This server requires a signed payload.');
        }
        payload = 'unsigned';
    } else if (declared.startsWith('STREAMING-')) {
        throw new S3Failure(501, 'NotImplemented', `This server does not implement ${declared}.`);
    } else {
        const actual = crypto.createHash('sha256').update(body).digest('hex');
        if (actual !== declared) {
            throw new S3Failure(400, 'XAmzContentSHA256Mismatch',
                'The provided \'x-amz-content-sha256\' header does not match what was computed.');
        }
    }
    const md5 = request.headers['content-md5'];
    if (md5 !== undefined) {
        if (!/^[A-Za-z0-9+/]{22}==$/.test(md5)) {
            throw new S3Failure(400, 'InvalidDigest', 'The Content-MD5 you specified is not valid.');
        }
        if (crypto.createHash('md5').update(body).digest('base64') !== md5) {
            throw new S3Failure(400, 'BadDigest',
                'The Content-MD5 you specified did not match what we received.');
        }
    }
    const checksum = request.headers['x-amz-checksum-sha256'];
    if (checksum !== undefined &&
        crypto.createHash('sha256').update(body).digest('base64') !== checksum) {
        throw new S3Failure(400, 'BadDigest',
            'The SHA256 you specified did not match the calculated checksum.');
    }
    return payload;
}

function errorXml(code, message, resource) {
    const escape = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
    return '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' +
        `<Code>${escape(code)}</Code><Message>${escape(message)}</Message>` +
        `<Resource>${escape(resource)}</Resource>` +
        `<RequestId>${crypto.randomBytes(8).toString('hex').toUpperCase()}</RequestId></Error>`;
}

function sendError(response, status, code, message, resource) {
    const body = errorXml(code, message, resource);
    response.writeHead(status, {
        'Content-Type': 'application/xml',
        'Content-Length': Buffer.byteLength(body),
    });
    response.end(body);
}

class FaultPlan {
    constructor() {
        this.faults = [];
    }

    add(fault) {
        const mode = fault.mode || 'error';
        if (!['error', 'drop', 'delay', 'ignore-range'].includes(mode)) {
            throw new Error(`unknown fault mode ${mode}`);
        }
        this.faults.push({
            mode,
            count: fault.count === undefined ? 1 : Number(fault.count),
            status: Number(fault.status || 503),
            code: fault.code || (Number(fault.status || 503) === 503 ? 'SlowDown' : 'InternalError'),
            when: fault.when || 'request',
            ms: Number(fault.ms || 1000),
            method: fault.method || null,
            query: fault.query || null,
            path: fault.path || null,
        });
    }

    /* Takes the first pending fault that matches this request, if any. */
    take(method, rawPath, query) {
        for (const fault of this.faults) {
            if (fault.count <= 0) {
                continue;
            }
            if (fault.method && fault.method !== method) {
                continue;
            }
            if (fault.query && !(fault.query in query)) {
                continue;
            }
            if (fault.path && !decodeURIComponent(rawPath).includes(fault.path)) {
                continue;
            }
            fault.count--;
            return fault;
        }
        return null;
    }

    clear() {
        this.faults = [];
    }
}

function readBody(request, onData) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        let length = 0;
        request.on('data', (chunk) => {
            chunks.push(chunk);
            length += chunk.length;
            if (onData) {
                onData(length);
            }
        });
        request.on('end', () => resolve(Buffer.concat(chunks, length)));
        request.on('error', reject);
        request.on('aborted', () => reject(new Error('client aborted')));
    });
}

async function handleAdmin(context, request, response, rawPath) {
    const reply = (status, value) => {
        const body = JSON.stringify(value, null, 1);
        response.writeHead(status, { 'Content-Type': 'application/json' });
        response.end(body);
    };
    const body = await readBody(request);
    if (rawPath === '/__admin/faults' && request.method === 'POST') {
        try {
            const parsed = JSON.parse(body.toString('utf8') || '{}');
            for (const fault of [].concat(parsed)) {
                context.faults.add(fault);
            }
        } catch (error) {
            return reply(400, { error: error.message });
        }
        return reply(200, { faults: context.faults.faults });
    }
    if (rawPath === '/__admin/faults' && request.method === 'DELETE') {
        context.faults.clear();
        return reply(200, {});
    }
    if (rawPath === '/__admin/requests' && request.method === 'GET') {
        return reply(200, context.requests);
    }
    if (rawPath === '/__admin/requests' && request.method === 'DELETE') {
        context.requests.length = 0;
        return reply(200, {});
    }
    return reply(404, { error: 'unknown admin endpoint' });
}

/* Host: BUCKET.localhost:PORT is a virtual-hosted request for BUCKET. */
function virtualHostBucket(hostHeader) {
    const host = hostHeader.replace(/:\d+$/, '');
    const match = /^(.+)\.localhost$/.exec(host);
    return match ? match[1] : null;
}

function proxy(context, request, response, forwardPath, body, fault, entry) {
    return new Promise((resolve) => {
        const headers = { ...request.headers };
        if (fault && fault.mode === 'ignore-range') {
            // A server without ranged GETs: the whole object, 200.
            delete headers.range;
        }
        delete headers['transfer-encoding'];
        delete headers.expect;
        headers.host = `127.0.0.1:${context.storePort}`;
        headers['content-length'] = String(body.length);
        const upstream = http.request({
            host: '127.0.0.1',
            port: context.storePort,
            method: request.method,
            path: forwardPath,
            headers,
        }, (reply) => {
            entry.status = reply.statusCode;
            const replyHeaders = { ...reply.headers };
            if (fault && fault.mode === 'drop' && fault.when === 'response') {
                // Headers and half the body, then a reset: a transfer cut mid-way.
                const chunks = [];
                reply.on('data', (chunk) => chunks.push(chunk));
                reply.on('end', () => {
                    const whole = Buffer.concat(chunks);
                    response.writeHead(reply.statusCode, replyHeaders);
                    response.write(whole.subarray(0, Math.floor(whole.length / 2)), () => {
                        response.socket.destroy();
                        resolve();
                    });
                });
                return;
            }
            response.writeHead(reply.statusCode, replyHeaders);
            reply.pipe(response);
            reply.on('end', resolve);
        });
        upstream.on('error', (error) => {
            entry.status = 502;
            sendError(response, 502, 'BadGateway', `s3rver: ${error.message}`, forwardPath);
            resolve();
        });
        upstream.end(body);
    });
}

async function handle(context, request, response) {
    const url = request.url;
    const questionMark = url.indexOf('?');
    const rawPath = questionMark < 0 ? url : url.slice(0, questionMark);
    const rawQuery = questionMark < 0 ? '' : url.slice(questionMark + 1);
    if (rawPath.startsWith('/__admin/')) {
        return handleAdmin(context, request, response, rawPath);
    }

    const hostHeader = request.headers.host || '';
    const query = parseQuery(rawQuery) || {};
    const entry = {
        sequence: context.requests.length + 1,
        method: request.method,
        host: hostHeader,
        path: rawPath,
        query: rawQuery,
        status: null,
        auth: null,
        payload: null,
        fault: null,
        bytes: 0,
        headers: {},
    };
    for (const [name, value] of Object.entries(request.headers)) {
        if ((name.startsWith('x-amz-') || name.startsWith('content-') || name === 'range') &&
            name !== 'x-amz-security-token') {
            entry.headers[name] = value;
        }
    }
    context.requests.push(entry);

    const fault = context.faults.take(request.method, rawPath, query);
    if (fault) {
        entry.fault = `${fault.mode}${fault.mode === 'error' ? ` ${fault.status} ${fault.code}` : ''}`;
    }
    const declaredLength = Number(request.headers['content-length'] || 0);
    let dropped = false;
    const drop = () => {
        if (!dropped) {
            dropped = true;
            entry.status = 'dropped';
            request.socket.destroy();
        }
    };
    const dropMidBody = fault && fault.mode === 'drop' && fault.when === 'request';
    let body;
    try {
        body = await readBody(request, (length) => {
            if (dropMidBody && length >= Math.max(1, Math.floor(declaredLength / 2))) {
                drop();
            }
        });
    } catch (error) {
        entry.status = entry.status || 'aborted';
        return;
    }
    entry.bytes = body.length;
    if (dropMidBody) {
        drop(); // a request without a body: drop before answering
        return;
    }

    const bucket = virtualHostBucket(hostHeader);
    const forwardPath = (bucket ? `/${bucket}` : '') + rawPath + (rawQuery ? `?${rawQuery}` : '');
    try {
        await verifySignature(context.options, request, rawPath, rawQuery, hostHeader);
        entry.auth = 'ok';
        entry.payload = verifyBody(context.options, request, body);
    } catch (error) {
        if (!(error instanceof S3Failure)) {
            throw error;
        }
        if (entry.auth === null) {
            entry.auth = error.code;
        }
        entry.status = error.status;
        entry.error = error.code;
        sendError(response, error.status, error.code, error.message, rawPath);
        return;
    }
    if (fault && fault.mode === 'error') {
        entry.status = fault.status;
        entry.error = fault.code;
        sendError(response, fault.status, fault.code, 'Injected fault.', rawPath);
        return;
    }
    if (fault && fault.mode === 'delay') {
        await new Promise((resolve) => setTimeout(resolve, fault.ms));
        if (request.socket.destroyed) {
            entry.status = 'client-gone';
            return;
        }
    }
    await proxy(context, request, response, forwardPath, body, fault, entry);
}

async function main() {
    const options = parseArguments(process.argv.slice(2));
    if (options.child) {
        return runStore({ ...options, ...JSON.parse(process.env.SQLPRODD_S3_STORE) });
    }
    let temporary = null;
    if (!options.directory) {
        temporary = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlprodd-s3-'));
        options.directory = temporary;
    }
    const { child, port: storePort } = await startStore(options);
    const context = { options, storePort, faults: new FaultPlan(), requests: [] };
    if (options.fail > 0) {
        context.faults.add({ mode: 'error', count: options.fail, status: options.failStatus, code: options.failCode });
    }

    const tls = options.tlsCert
        ? { cert: fs.readFileSync(options.tlsCert), key: fs.readFileSync(options.tlsKey) }
        : null;
    const serve = tls ? (handler) => https.createServer(tls, handler) : http.createServer;
    const server = serve((request, response) => {
        handle(context, request, response).catch((error) => {
            console.error(`s3 test server: ${error.stack}`);
            if (!response.headersSent) {
                sendError(response, 500, 'InternalError', error.message, request.url);
            } else {
                response.destroy();
            }
        }).finally(() => {
            if (options.verbose) {
                const last = context.requests[context.requests.length - 1];
                if (last) {
                    console.error(`s3 test server: ${last.method} ${last.path}?${last.query} -> ${last.status} ${last.auth}`);
                }
            }
        });
    });
    // How long an idle client connection is kept open: S3 closes one after
    // about 20 s, other servers keep it for minutes (--keep-alive-ms).
    server.keepAliveTimeout = options.keepAliveMs;

    const shutdown = () => {
        if (shuttingDown) {
            return;
        }
        shuttingDown = true;
        server.close();
        child.once('exit', () => {
            if (temporary) {
                fs.rmSync(temporary, { recursive: true, force: true });
            }
            process.exit(0);
        });
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 3000).unref();
    };
    process.on('SIGTERM', shutdown);
    process.on('SIGINT', shutdown);
    process.on('SIGHUP', shutdown);

    server.listen(options.port, '127.0.0.1', () => {
        const { port } = server.address();
        process.stdout.write(`s3 test server listening on ${tls ? 'https' : 'http'}://127.0.0.1:${port}\n`);
    });
}

main().catch((error) => {
    console.error(`s3 test server: ${error.message}`);
    process.exit(2);
});
