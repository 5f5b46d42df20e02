#!/usr/bin/python3
# openshift-install -- the sbot LAB STAND-IN, not Red Hat's OpenShift installer.
#
# `sbot lab` serves this script, in a release tarball laid out like
# mirror.openshift.com, so that sbot's OpenShift component can be exercised end
# to end with no network: download, checksum, spawn, ISO verification and
# publishing are real; the ISO is not. `agent create image --dir DIR` reads
# DIR/install-config.yaml and DIR/agent-config.yaml the way the real installer
# does (YAML 1.1 through a strict reader: unknown fields, wrong types and
# duplicate keys are errors), rejects what the real one rejects for the fields
# it checks (same field paths and messages, in the real installer's log style),
# then writes DIR/agent.x86_64.iso: a small ISO 9660 image with an El Torito
# boot record (a boot sector that prints that it is the lab's stand-in) and the
# two configs embedded, and consumes the configs from DIR like the real one.
# Needs python3, python3-yaml and xorriso (Debian packages). Version: @VERSION@.
import base64
import datetime
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile

VERSION = "@VERSION@"
STANDIN = "sbot lab stand-in, not the real installer"
LOG_LEVELS = ["debug", "info", "warn", "error"]


class Fatal(Exception):
    pass


# ---- logging in logrus's style ---------------------------------------------

class Log:
    def __init__(self):
        self.level = "info"
        self.file = None

    def _quote(self, msg):
        if re.fullmatch(r"[A-Za-z0-9_./:-]+", msg):
            return msg
        return json.dumps(msg)

    def emit(self, level, msg):
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.file:
            self.file.write('time="%s" level=%s msg=%s\n' % (now, level, self._quote(msg)))
            self.file.flush()
        rank = {"debug": 0, "info": 1, "warning": 2, "error": 3, "fatal": 4}
        if rank[level] >= rank[{"warn": "warning"}.get(self.level, self.level)]:
            if sys.stderr.isatty():
                sys.stderr.write("%s %s\n" % (level.upper()[:4] if level != "fatal" else "FATAL", msg))
            else:
                sys.stderr.write("level=%s msg=%s\n" % (level, self._quote(msg)))
            sys.stderr.flush()

    def debug(self, m): self.emit("debug", m)
    def info(self, m): self.emit("info", m)
    def warn(self, m): self.emit("warning", m)
    def fatal(self, m): self.emit("fatal", m)


log = Log()


# ---- YAML the way sigs.k8s.io/yaml reads it: YAML 1.1, strict ----------------

def load_yaml(text, name):
    try:
        import yaml
    except ImportError:
        raise Fatal("%s needs python3-yaml (apt-get install python3-yaml)" % STANDIN)

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise Fatal("error converting YAML to JSON: yaml: unmarshal errors:\n  line %d: key %s already set in map"
                            % (key_node.start_mark.line + 1, json.dumps(str(key))))
            seen[key] = True
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise Fatal("error converting YAML to JSON: yaml: line %d: %s" % ((mark.line + 1) if mark else 0, e.problem))
    except yaml.YAMLError as e:
        raise Fatal("error converting YAML to JSON: yaml: %s" % e)


# ---- the Go types the fields unmarshal into ----------------------------------

S, I, B = "string", "int64", "bool"
OPEN = ("open",)


def obj(gotype, **fields):
    return ("obj", gotype, fields)


def lst(t):
    return ("list", t)


def mp(t):
    return ("map", t)


OBJECT_META = obj("ObjectMeta", name=S, namespace=S, labels=mp(S), annotations=mp(S), creationTimestamp=OPEN)
MACHINE_POOL = obj("MachinePool", name=S, replicas=I, architecture=S, hyperthreading=S, platform=OPEN, fencing=OPEN)
INSTALL_CONFIG = obj(
    "InstallConfig",
    apiVersion=S, kind=S, metadata=OBJECT_META, baseDomain=S, sshKey=S, pullSecret=S,
    additionalTrustBundle=S, additionalTrustBundlePolicy=S, publish=S, fips=B, featureSet=S,
    featureGates=lst(S), cpuPartitioningMode=S, credentialsMode=S, operatorPublishingStrategy=OPEN,
    capabilities=obj("Capabilities", baselineCapabilitySet=S, additionalEnabledCapabilities=lst(S)),
    bootstrapInPlace=obj("BootstrapInPlace", installationDisk=S),
    imageContentSources=lst(obj("ImageContentSource", source=S, mirrors=lst(S))),
    imageDigestSources=lst(obj("ImageDigestSource", source=S, mirrors=lst(S), mirrorSourcePolicy=S)),
    proxy=obj("Proxy", httpProxy=S, httpsProxy=S, noProxy=S),
    networking=obj("Networking", networkType=S,
                   machineNetwork=lst(obj("MachineNetworkEntry", cidr=S)),
                   clusterNetwork=lst(obj("ClusterNetworkEntry", cidr=S, hostPrefix=I)),
                   serviceNetwork=lst(S), ovnKubernetesConfig=OPEN, clusterNetworkMTU=I),
    controlPlane=MACHINE_POOL, arbiter=MACHINE_POOL, compute=lst(MACHINE_POOL),
    platform=obj("Platform",
                 baremetal=obj("Platform", apiVIPs=lst(S), ingressVIPs=lst(S), apiVIP=S, ingressVIP=S,
                               hosts=lst(OPEN), provisioningNetwork=S, provisioningNetworkCIDR=S,
                               provisioningNetworkInterface=S, clusterProvisioningIP=S,
                               bootstrapProvisioningIP=S, externalBridge=S, provisioningBridge=S,
                               externalMACAddress=S, provisioningMACAddress=S, bootstrapOSImage=S,
                               clusterOSImage=S, loadBalancer=OPEN, libvirtURI=S),
                 none=obj("Platform"),
                 external=obj("Platform", platformName=S, cloudControllerManager=S),
                 vsphere=OPEN, nutanix=OPEN, aws=OPEN, azure=OPEN, gcp=OPEN, ibmcloud=OPEN,
                 openstack=OPEN, powervs=OPEN, ovirt=OPEN))
ROOT_DEVICE_HINTS = obj("RootDeviceHints", deviceName=S, hctl=S, model=S, vendor=S, serialNumber=S,
                        minSizeGigabytes=I, wwn=S, wwnWithExtension=S, wwnVendorExtension=S, rotational=B)
AGENT_CONFIG = obj(
    "Config",
    apiVersion=S, kind=S, metadata=OBJECT_META, rendezvousIP=S, bootArtifactsBaseURL=S,
    additionalNTPSources=lst(S), minimalISO=B,
    hosts=lst(obj("Host", hostname=S, role=S, rootDeviceHints=ROOT_DEVICE_HINTS,
                  interfaces=lst(obj("Interface", name=S, macAddress=S)), networkConfig=OPEN)))


def json_kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "string"  # dates and other YAML 1.1 types become strings in JSON


def go_type(t):
    if t == OPEN:
        return "interface {}"
    if isinstance(t, str):
        return t
    if t[0] == "list":
        return "[]" + go_type(t[1])
    if t[0] == "map":
        return "map[string]" + go_type(t[1])
    return t[1]


def check_types(v, t, path, struct):
    """Decode v as the Go type t would: the first problem is the error."""
    def bad(v):
        raise Fatal("error unmarshaling JSON: while decoding JSON: json: cannot unmarshal %s into Go struct field %s.%s of type %s"
                    % (json_kind(v), struct, path, go_type(t)))
    if v is None or t == OPEN:
        return
    if t == S:
        if not isinstance(v, str):
            bad(v)
    elif t == I:
        if isinstance(v, bool) or not isinstance(v, int):
            bad(v)
    elif t == B:
        if not isinstance(v, bool):
            bad(v)
    elif t[0] == "list":
        if not isinstance(v, list):
            bad(v)
        for x in v:
            check_types(x, t[1], path, struct)
    elif t[0] == "map":
        if not isinstance(v, dict):
            bad(v)
        for x in v.values():
            check_types(x, t[1], path, struct)
    else:
        if not isinstance(v, dict):
            bad(v)
        for k, x in v.items():
            if str(k) not in t[2]:
                raise Fatal('error unmarshaling JSON: while decoding JSON: json: unknown field "%s"' % k)
            check_types(x, t[2][str(k)], (path + "." if path else "") + str(k), t[1])


# ---- field errors in k8s.io/apimachinery's format -----------------------------

def q(v):
    return json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


class Errors(list):
    def invalid(self, path, value, detail):
        self.append('%s: Invalid value: %s: %s' % (path, q(value), detail))

    def required(self, path, detail):
        self.append("%s: Required value: %s" % (path, detail))

    def forbidden(self, path, detail):
        self.append("%s: Forbidden: %s" % (path, detail))

    def unsupported(self, path, value, supported):
        self.append("%s: Unsupported value: %s: supported values: %s"
                    % (path, q(value), ", ".join(json.dumps(s) for s in supported)))

    def too_many(self, path, n, most):
        self.append("%s: Too many: %d: must have at most %d items" % (path, n, most))

    def duplicate(self, path, value):
        self.append("%s: Duplicate value: %s" % (path, q(value)))

    def aggregate(self):
        return self[0] if len(self) == 1 else "[" + ", ".join(self) + "]"


DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def subdomain_error(v):
    if len(v) > 253:
        return "must be no more than 253 characters"
    if not DNS1123.match(v):
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return None


def parse_ip(v):
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        return None


def parse_cidr(v, path):
    try:
        return ipaddress.ip_network(v, strict=False)
    except ValueError:
        raise Fatal("error unmarshaling JSON: while decoding JSON: invalid CIDR address: %s" % v)


def pull_secret_error(s):
    if s == "":
        return "unexpected end of JSON input"
    try:
        doc = json.loads(s)
    except json.JSONDecodeError as e:
        return "invalid character %r looking for beginning of value (%s)" % (s[e.pos:e.pos + 1], e.msg)
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict) or not auths:
        return "auths required"
    missing = ['"%s" requires either auth or credsStore' % d for d, a in sorted(auths.items())
               if not isinstance(a, dict) or ("auth" not in a and "credsStore" not in a)]
    return ", ".join(missing) or None


SSH_TYPES = ("ssh-rsa", "ssh-ed25519", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


def ssh_key_error(key):
    for line in key.strip().splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] not in SSH_TYPES:
            return "ssh: no key found"
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except ValueError:
            return "ssh: no key found"
        n = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
        if n < 0 or blob[4:4 + n].decode("latin-1") != parts[0]:
            return "ssh: no key found"
    return None


MAC = re.compile(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")


# ---- install-config.yaml -------------------------------------------------------

def load_install_config(d):
    path = os.path.join(d, "install-config.yaml")
    prefix = 'failed to load asset "Install Config": '
    if not os.path.exists(path):
        raise Fatal(prefix + "missing configuration or manifest file: %s (the sbot lab stand-in "
                    "needs install-config.yaml; ZTP manifests are not implemented)" % path)
    text = open(path, encoding="utf-8").read()
    try:
        ic = load_yaml(text, "install-config.yaml")
        if not isinstance(ic, dict):
            raise Fatal("error unmarshaling JSON: while decoding JSON: json: cannot unmarshal %s into Go value of "
                        "type types.InstallConfig" % json_kind(ic))
        check_types(ic, INSTALL_CONFIG, "", "InstallConfig")
    except Fatal as e:
        raise Fatal(prefix + 'failed to create install config: invalid "install-config.yaml" file: %s' % e)
    errs = Errors()
    if not ic.get("apiVersion"):
        errs.required("apiVersion", "install-config version required")
        raise Fatal(prefix + "invalid install-config configuration: " + errs.aggregate())
    if ic["apiVersion"] != "v1":
        errs.invalid("apiVersion", ic["apiVersion"], 'install-config version must be "v1"')
        raise Fatal(prefix + "invalid install-config configuration: " + errs.aggregate())
    # defaults, as the installer sets them before validating
    net = ic.setdefault("networking", {}) or {}
    ic["networking"] = net
    net.setdefault("networkType", "OVNKubernetes")
    if not net.get("machineNetwork"):
        net["machineNetwork"] = [{"cidr": "10.0.0.0/16"}]
    if not net.get("clusterNetwork"):
        net["clusterNetwork"] = [{"cidr": "10.128.0.0/14", "hostPrefix": 23}]
    if not net.get("serviceNetwork"):
        net["serviceNetwork"] = ["172.30.0.0/16"]
    cp = ic.get("controlPlane") or {"name": "master"}
    ic["controlPlane"] = cp
    if cp.get("replicas") is None:
        cp["replicas"] = 3
    for pool in ic.get("compute") or []:
        if pool.get("replicas") is None:
            pool["replicas"] = 3
    if not ic.get("compute"):
        ic["compute"] = [{"name": "worker", "replicas": 3}]
    ic.setdefault("publish", "External")

    name = (ic.get("metadata") or {}).get("name") or ""
    e = subdomain_error(name)
    if e:
        errs.invalid("metadata.name", name, e)
    base = (ic.get("baseDomain") or "").rstrip(".")
    e2 = subdomain_error(base)
    if e2:
        errs.invalid("baseDomain", ic.get("baseDomain") or "", e2)
    if ic.get("sshKey"):
        e = ssh_key_error(ic["sshKey"])
        if e:
            errs.invalid("sshKey", ic["sshKey"], e)
    e = pull_secret_error(ic.get("pullSecret") or "")
    if e:
        # the value is not repeated here: it is a credential
        errs.invalid("pullSecret", "<redacted by the sbot lab stand-in>", e)

    machine = [parse_cidr(m.get("cidr") or "", "") for m in net["machineNetwork"]]
    service = [parse_cidr(s, "") for s in net["serviceNetwork"]]
    for i, c in enumerate(net["clusterNetwork"]):
        cn = parse_cidr(c.get("cidr") or "", "")
        if any(cn.overlaps(m) for m in machine):
            errs.invalid("networking.clusterNetwork[%d].cidr" % i, str(cn),
                         "cluster network must not overlap with any of the machine networks")
        if (c.get("hostPrefix") or 0) < cn.prefixlen:
            errs.invalid("networking.clusterNetwork[%d].hostPrefix" % i, c.get("hostPrefix") or 0,
                         "cluster network host subnetwork prefix must not be larger size than CIDR " + str(cn))
    for i, s in enumerate(service):
        if any(s.overlaps(m) for m in machine):
            errs.invalid("networking.serviceNetwork[%d]" % i, str(s),
                         "service network must not overlap with any of the machine networks")
    if cp.get("name") != "master":
        errs.unsupported("controlPlane.name", cp.get("name") or "", ["master"])
    for i, pool in enumerate(ic["compute"]):
        if pool.get("name") != "worker":
            errs.unsupported("compute[%d].name" % i, pool.get("name") or "", ["worker"])

    platforms = [k for k, v in (ic.get("platform") or {}).items()]
    known = ["baremetal", "external", "none", "nutanix", "vsphere"]
    platform = platforms[0] if platforms else ""
    if len(platforms) > 1:
        errs.invalid("platform", platform, "must only specify a single type of platform; cannot use both %s and %s"
                     % (json.dumps(platforms[0]), json.dumps(platforms[1])))
    elif platform not in known:
        errs.unsupported("platform", platform, known)
    elif platform in ("vsphere", "nutanix"):
        raise Fatal(prefix + "%s: platform %s is valid for the real installer but not implemented here"
                    % (STANDIN, json.dumps(platform)))

    masters = cp["replicas"]
    workers = sum(p.get("replicas") or 0 for p in ic["compute"])
    if masters not in (1, 3, 4, 5):
        errs.unsupported("controlPlane.replicas", masters, ["3", "1", "4", "5"])
    if masters == 1:
        if workers == 0:
            if platform in ("none", "external") and net["networkType"] != "OVNKubernetes":
                errs.invalid("networking.networkType", net["networkType"],
                             "Only OVNKubernetes network type is allowed for Single Node OpenShift (SNO) cluster")
            if platform not in ("none", "external"):
                errs.invalid("platform", platform, "Only platform none and external supports 1 ControlPlane and 0 Compute nodes")
        else:
            errs.forbidden("compute.replicas", "Total number of compute replicas must be 0 when controlPlane.replicas "
                           "is 1 for platform none or external. Found %d" % workers)
    if platform == "baremetal":
        bm = ic["platform"]["baremetal"] or {}
        vips = {}
        for f, what in (("apiVIPs", "API"), ("ingressVIPs", "Ingress")):
            vips[f] = bm.get(f) or ([bm[f[:-1]]] if bm.get(f[:-1]) else [])
            if not vips[f]:
                errs.required("platform.baremetal." + f, "must specify at least one VIP for the " + what)
            for v in vips[f]:
                ip = parse_ip(v)
                if ip is None:
                    errs.invalid("platform.baremetal." + f, v, '"%s" is not a valid IP' % v)
                    continue
                if not any(ip in m for m in machine):
                    errs.invalid("platform.baremetal." + f, v, "IP expected to be in one of the machine networks: "
                                 + ",".join(str(m) for m in machine))
        for v in vips["apiVIPs"]:
            if v in vips["ingressVIPs"]:
                errs.invalid("platform.baremetal.apiVIPs", v, "VIP for API must not be one of the Ingress VIPs")
    if errs:
        raise Fatal(prefix + "invalid install-config configuration: " + errs.aggregate())
    log.info("Configuration has %d master replicas, 0 arbiter replicas, and %d worker replicas" % (masters, workers))
    return ic, text, machine, masters, workers


# ---- agent-config.yaml -----------------------------------------------------------

def load_agent_config(d, masters, workers):
    path = os.path.join(d, "agent-config.yaml")
    if not os.path.exists(path):
        raise Fatal('failed to load asset "Agent Config": %s: agent-config.yaml is required by the sbot lab stand-in '
                    "(the real installer can do without it)" % path)
    text = open(path, encoding="utf-8").read()
    try:
        ac = load_yaml(text, "agent-config.yaml")
        if not isinstance(ac, dict):
            raise Fatal("error unmarshaling JSON: while decoding JSON: json: cannot unmarshal %s into Go value of "
                        "type agent.Config" % json_kind(ac))
        check_types(ac, AGENT_CONFIG, "", "Config")
    except Fatal as e:
        raise Fatal('failed to load asset "Agent Config": failed to unmarshal agent-config.yaml: %s' % e)
    errs = Errors()
    if ac.get("apiVersion") not in ("v1alpha1", "v1beta1"):
        errs.unsupported("apiVersion", ac.get("apiVersion") or "", ["v1alpha1", "v1beta1"])
    rv = ac.get("rendezvousIP") or ""
    if rv and parse_ip(rv) is None:
        errs.invalid("rendezvousIP", rv, '"%s" is not a valid IP' % rv)
    for i, url in enumerate(ac.get("additionalNTPSources") or []):
        if not url:
            errs.invalid("additionalNTPSources[%d]" % i, url, "NTP source must not be empty")
    if errs:
        raise Fatal('failed to load asset "Agent Config": invalid Agent Config configuration: ' + errs.aggregate())

    hosts = ac.get("hosts") or []
    herrs = Errors()
    macs = {}
    for i, h in enumerate(hosts):
        hp = "Hosts[%d]" % i
        ifaces = h.get("interfaces") or []
        if not ifaces:
            herrs.required(hp + ".Interfaces", "at least one interface must be defined for each node")
        for j, itf in enumerate(ifaces):
            mp_ = "%s.Interfaces[%d].macAddress" % (hp, j)
            mac = itf.get("macAddress") or ""
            if not mac:
                herrs.required(mp_, "each interface must have a MAC address defined")
                continue
            if not MAC.match(mac):
                herrs.invalid(mp_, mac, "address %s: invalid MAC address" % mac)
            if mac.lower() in macs:
                herrs.invalid(mp_, mac, "duplicate MAC address found")
            macs[mac.lower()] = True
        rdh = h.get("rootDeviceHints") or {}
        dev = rdh.get("deviceName") or ""
        if dev:
            sub = dev[len("/dev/"):] if dev.startswith("/dev/") else None
            if sub is None:
                herrs.invalid(hp + ".rootDeviceHints.deviceName", dev, "Device Name of root device hint must be a /dev/ path")
            elif "/" in (sub[len("disk/by-path/"):] if sub.startswith("disk/by-path/") else sub):
                herrs.invalid(hp + ".rootDeviceHints.deviceName", dev,
                              "Device Name of root device hint must be path in /dev/ or /dev/disk/by-path/")
        if rdh.get("wwnWithExtension"):
            herrs.forbidden(hp + ".rootDeviceHints.wwnWithExtension", "WWN extensions are not supported in root device hints")
        if rdh.get("wwnVendorExtension"):
            herrs.forbidden(hp + ".rootDeviceHints.wwnVendorExtension",
                            "WWN vendor extensions are not supported in root device hints")
        role = h.get("role") or ""
        if role and role not in ("master", "worker"):
            herrs.forbidden(hp + ".Host", "host role has incorrect value. Role must either be 'master' or 'worker'")
        if rv and role == "worker" and rv in json.dumps(h.get("networkConfig") or {}):
            herrs.forbidden(hp + ".Host", "Host %s has role 'worker' and has the rendezvousIP assigned to it. "
                            "The rendezvousIP must be assigned to a control plane host." % (h.get("hostname") or ""))
    if len(hosts) > masters + workers:
        herrs.too_many("Hosts", len(hosts), masters + workers)
    nmasters = sum(1 for h in hosts if h.get("role") == "master")
    if nmasters > masters:
        herrs.forbidden("Hosts", "The number of hosts with role master (%d) exceeds controlPlane.replicas (%d)"
                        % (nmasters, masters))
    if herrs:
        raise Fatal('failed to fetch dependency of "Agent Hosts": invalid Hosts configuration: ' + herrs.aggregate())
    if not rv:
        raise Fatal("%s: rendezvousIP is required here (the real installer can pick one from the hosts' "
                    "networkConfig)" % STANDIN)
    log.info("The rendezvous host IP (node0 IP) is " + rv)
    return ac, text, rv


# ---- the ISO -------------------------------------------------------------------

def boot_sector():
    """A no-emulation El Torito boot image (2048 bytes) for x86 BIOS: prints a
    line through the video BIOS and halts."""
    msg = ("sbot lab stand-in agent ISO for OpenShift %s: not a RHCOS image. Nothing to boot here.\r\n" % VERSION)
    code = bytes([0x31, 0xC0,              # xor ax, ax
                  0x8E, 0xD8,              # mov ds, ax
                  0xBE, 0x1A, 0x7C,        # mov si, 0x7C1A (the message, loaded at 0:7C00)
                  0xFC,                    # cld
                  0xAC,                    # lodsb
                  0x08, 0xC0,              # or al, al
                  0x74, 0x09,              # jz halt
                  0xB4, 0x0E,              # mov ah, 0x0E (teletype output)
                  0xBB, 0x07, 0x00,        # mov bx, 7
                  0xCD, 0x10,              # int 0x10
                  0xEB, 0xF2,              # jmp lodsb
                  0xFA, 0xF4, 0xEB, 0xFC])  # halt: cli; hlt; jmp halt
    blob = code + msg.encode("ascii") + b"\0"
    return blob + b"\0" * (2048 - len(blob))


def create_image(d, ic_text, ac_text, rv, cluster):
    xorriso = shutil.which("xorriso")
    if not xorriso:
        raise Fatal("%s needs xorriso to write the ISO (apt-get install xorriso)" % STANDIN)
    log.info("%s: writing a small bootable ISO instead of extracting the RHCOS agent ISO from the release payload"
             % STANDIN)
    stage = tempfile.mkdtemp(prefix=".sbot-lab-iso-", dir=d)
    tmp_iso = os.path.join(d, ".agent.x86_64.iso.tmp")
    try:
        os.makedirs(os.path.join(stage, "boot"))
        os.makedirs(os.path.join(stage, "sbot-lab"))
        with open(os.path.join(stage, "boot", "sbot-lab-boot.img"), "wb") as f:
            f.write(boot_sector())
        for name, text in (("install-config.yaml", ic_text), ("agent-config.yaml", ac_text),
                           ("rendezvousIP", rv + "\n"),
                           ("README.txt", "Agent ISO written by the sbot lab's stand-in openshift-install %s for "
                                          "cluster %s.\nIt boots to a message, not to RHCOS.\n" % (VERSION, cluster))):
            with open(os.path.join(stage, "sbot-lab", name), "w", encoding="utf-8") as f:
                f.write(text)
        volid = ("agent-sbot-lab-" + VERSION)[:32]
        cmd = [xorriso, "-as", "mkisofs", "-quiet", "-o", tmp_iso, "-V", volid, "-R", "-J",
               "-c", "boot/boot.catalog", "-b", "boot/sbot-lab-boot.img", "-no-emul-boot",
               "-boot-load-size", "4", stage]
        log.debug("running " + " ".join(cmd))
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise Fatal("failed to write the ISO: xorriso exited %d: %s" % (p.returncode, p.stderr.strip()))
        os.replace(tmp_iso, os.path.join(d, "agent.x86_64.iso"))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if os.path.exists(tmp_iso):
            os.remove(tmp_iso)


def write_auth(d, ic, rv):
    auth = os.path.join(d, "auth")
    os.makedirs(auth, exist_ok=True)
    password = "-".join(secrets.token_urlsafe(4)[:5] for _ in range(4))
    cluster = (ic.get("metadata") or {}).get("name", "")
    kubeconfig = ("# written by the %s: no cluster answers here\napiVersion: v1\nkind: Config\nclusters:\n"
                  "- cluster:\n    server: https://api.%s.%s:6443\n  name: %s\ncontexts:\n- context:\n"
                  "    cluster: %s\n    user: admin\n  name: admin\ncurrent-context: admin\nusers:\n- name: admin\n"
                  "  user:\n    token: sbot-lab-stand-in\n"
                  % (STANDIN, cluster, ic.get("baseDomain", ""), cluster, cluster))
    for name, text in (("kubeconfig", kubeconfig), ("kubeadmin-password", password)):
        path = os.path.join(auth, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    with open(os.path.join(d, "rendezvousIP"), "w") as f:
        f.write(rv + "\n")
    with open(os.path.join(d, ".openshift_install_state.json"), "w") as f:
        json.dump({"*image.AgentImage": {"standIn": STANDIN, "version": VERSION}}, f, indent=2)


def agent_create_image(d):
    os.makedirs(d, exist_ok=True)
    log.file = open(os.path.join(d, ".openshift_install.log"), "a")
    log.debug("OpenShift Installer %s (%s)" % (VERSION, STANDIN))
    ic, ic_text, _, masters, workers = load_install_config(d)
    _, ac_text, rv = load_agent_config(d, masters, workers)
    create_image(d, ic_text, ac_text, rv, (ic.get("metadata") or {}).get("name", ""))
    write_auth(d, ic, rv)
    # the installer consumes its inputs
    for name, what in (("install-config.yaml", "Install Config"), ("agent-config.yaml", "Agent Config")):
        os.remove(os.path.join(d, name))
        log.info("Consuming %s from target directory" % what)
    log.info("Generated ISO at %s." % os.path.join(d, "agent.x86_64.iso"))


USAGE = """Creates OpenShift clusters (sbot lab stand-in %s: only `agent create image` and `version`)

Usage:
  openshift-install [command]

Available Commands:
  agent       Commands for supporting cluster installation using agent installer
  version     Print version information

Flags:
      --dir string         assets directory (default ".")
  -h, --help               help for openshift-install
      --log-level string   log level (e.g. "debug | info | warn | error") (default "info")
""" % VERSION


def main(argv):
    words, d, i = [], ".", 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if a.startswith("--dir=") or a.startswith("--log-level="):
            k, v = a.split("=", 1)
            argv[i:i + 1] = [k, v]
            a = k
        if a == "--dir" or a == "--log-level":
            if i + 1 >= len(argv):
                sys.stderr.write("Error: flag needs an argument: %s\n" % a)
                return 1
            if a == "--dir":
                d = argv[i + 1]
            else:
                if argv[i + 1] not in LOG_LEVELS:
                    sys.stderr.write('Error: invalid argument "%s" for "--log-level" flag\n' % argv[i + 1])
                    return 1
                log.level = argv[i + 1]
            i += 2
            continue
        if a.startswith("-"):
            sys.stderr.write("Error: unknown flag: %s\nRun 'openshift-install --help' for usage.\n" % a)
            return 1
        words.append(a)
        i += 1
    if words == ["version"]:
        sys.stdout.write("openshift-install %s\nbuilt from commit sbot-lab-stand-in (%s)\nrelease image "
                         "quay.io/openshift-release-dev/ocp-release:%s-x86_64\nrelease architecture amd64\n"
                         % (VERSION, STANDIN, VERSION))
        return 0
    if words == ["agent", "create", "image"]:
        try:
            agent_create_image(d)
        except Fatal as e:
            log.fatal("failed to fetch Agent Installer ISO: " + str(e))
            return 1
        return 0
    if words and words[0] == "agent":
        log.fatal("%s: only `agent create image` is implemented, not `%s`" % (STANDIN, " ".join(words)))
        return 1
    sys.stderr.write('Error: unknown command "%s" for "openshift-install"\nRun \'openshift-install --help\' for usage.\n'
                     % (words[0] if words else ""))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
