"""The Server.xml checker of tests/configs/ome_schema.py, against OME 0.19.0's own source and examples.

The examples OME ships passing is what shows the extractor reads OME's C++ as OME does; the rest pins
down what the checker reports, and that every element pi-stream renders is one OME 0.19.0 knows.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pi_stream.site.webrtc import DEFAULT_OME_SOURCE
from tests.configs.ome_schema import Element, SchemaError, check, load_schema

# The tarball of ../shared/vendor/README.md; PI_STREAM_OME_TARBALL points to the same file elsewhere.
TARBALL = Path(os.environ.get("PI_STREAM_OME_TARBALL",
                              Path(__file__).resolve().parents[2].parent / "shared/vendor/OvenMediaEngine-0.19.0.tar.gz"))
EXAMPLES_DIR = "misc/conf_examples/"
SERVER_EXAMPLES = ("Server.xml", "Origin.xml", "Edge.xml")  # the others, DrmInfo.xml and Logger.xml, have roots of their own

# Problems in OME's own examples, each checked against the C++ and expected exactly.
EXAMPLE_PROBLEMS = {
    "Server.xml": [
        # Lines 487 and 511 of misc/conf_examples/Server.xml both open <WebRTC> in the application's
        # <Providers>. providers.h:65 registers WebRTC once (a single WebrtcProvider, not a vector), and
        # DataSource::GetValueFromXml (engine/data_source.cpp:318-325) returns the first matching child:
        # OME reads the empty <WebRTC /> and silently drops the second one, with its <Timeout> and
        # <CrossDomains>. The example is wrong, not the checker: Origin.xml has one <WebRTC> there.
        "Server.VirtualHosts.VirtualHost[1].Applications.Application[0].Providers.WebRTC: <WebRTC> appears 2 times in"
        " <Providers>, but only one is allowed (OME reads the first and silently drops the rest)",
    ],
}

# The shape of Server.xml pi-stream renders: every element it uses, with plausible values.
PI_STREAM_SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Server version="8">
  <Name>pi-stream</Name>
  <Type>origin</Type>
  <IP>127.0.0.1</IP>
  <PrivacyProtection>false</PrivacyProtection>
  <Bind>
    <Managers>
      <API>
        <Port>8081</Port>
        <WorkerCount>1</WorkerCount>
      </API>
    </Managers>
    <Providers>
      <RTMP>
        <Port>1940</Port>
      </RTMP>
    </Providers>
    <Publishers>
      <WebRTC>
        <Signalling>
          <Port>3333</Port>
        </Signalling>
        <IceCandidates>
          <IceCandidate>*:10000/udp</IceCandidate>
          <TcpRelay>*:3478</TcpRelay>
          <TcpForce>true</TcpForce>
          <TcpRelayWorkerCount>1</TcpRelayWorkerCount>
        </IceCandidates>
      </WebRTC>
    </Publishers>
  </Bind>
  <Managers>
    <Host>
      <Names>
        <Name>*</Name>
      </Names>
    </Host>
    <API>
      <AccessToken>token</AccessToken>
    </API>
  </Managers>
  <VirtualHosts>
    <VirtualHost>
      <Name>default</Name>
      <Host>
        <Names>
          <Name>*</Name>
        </Names>
      </Host>
      <Applications>
        <Application>
          <Name>cameras</Name>
          <Type>live</Type>
          <OutputProfiles>
            <OutputProfile>
              <Name>bypass</Name>
              <OutputStreamName>${OriginStreamName}</OutputStreamName>
              <Encodes>
                <Video>
                  <Bypass>true</Bypass>
                </Video>
                <Audio>
                  <Codec>opus</Codec>
                  <Bitrate>128000</Bitrate>
                  <Samplerate>48000</Samplerate>
                  <Channel>2</Channel>
                </Audio>
              </Encodes>
            </OutputProfile>
          </OutputProfiles>
          <Providers>
            <RTMP />
          </Providers>
          <Publishers>
            <WebRTC>
              <Timeout>30000</Timeout>
            </WebRTC>
          </Publishers>
        </Application>
      </Applications>
    </VirtualHost>
  </VirtualHosts>
</Server>
"""
APPLICATION = "Server.VirtualHosts.VirtualHost[0].Applications.Application[0]"

# Element path (below <Server>) -> (value type, may repeat), as checked against the headers named.
PI_STREAM_ELEMENTS = {
    "Bind/Providers/RTMP/Port": ("text", False),  # bind/providers/provider.h: cmn::SingularPort
    "Bind/Publishers/WebRTC/Signalling/Port": ("text", False),  # bind/common/webrtc/signalling.h
    "Bind/Publishers/WebRTC/IceCandidates/IceCandidate": ("string", True),  # bind/common/webrtc/ice_candidates.h
    "Bind/Publishers/WebRTC/IceCandidates/TcpRelay": ("string", True),
    "Bind/Publishers/WebRTC/IceCandidates/TcpForce": ("bool", False),
    "Bind/Publishers/WebRTC/IceCandidates/TcpRelayWorkerCount": ("int", False),
    "VirtualHosts/VirtualHost/Applications/Application/Providers/RTMP": ("item", False),  # .../providers/providers.h
    "VirtualHosts/VirtualHost/Applications/Application/Publishers/WebRTC": ("item", False),  # .../publishers/publishers.h
    "VirtualHosts/VirtualHost/Applications/Application/OutputProfiles/OutputProfile/Encodes/Video/Bypass": ("bool", False),
    "VirtualHosts/VirtualHost/Applications/Application/OutputProfiles/OutputProfile/Encodes/Audio/Codec": ("string", False),
    "Bind/Managers/API/Port": ("text", False),  # bind/managers/api.h
    "Managers/API/AccessToken": ("string", False),  # managers/api/api.h
}


@pytest.fixture(scope="module")
def tarball() -> Path:
    if not TARBALL.is_file():
        pytest.skip(f"no OME source tarball at {TARBALL} (see ../shared/vendor/README.md, or set PI_STREAM_OME_TARBALL)")
    digest = hashlib.sha256(TARBALL.read_bytes()).hexdigest()
    assert digest == DEFAULT_OME_SOURCE.sha256, (
        f"{TARBALL} is not the OME {DEFAULT_OME_SOURCE.version} pi-stream builds (sha256 {digest})")
    return TARBALL


@pytest.fixture(scope="module")
def schema(tarball: Path) -> Element:
    return load_schema(tarball)


@pytest.fixture(scope="module")
def examples(tarball: Path) -> dict[str, str]:
    """misc/conf_examples/*.xml of the tarball, by file name."""
    found = {}
    with tarfile.open(tarball) as archive:
        for member in archive:
            directory, _, name = member.name.partition("/")[2].rpartition("/")
            if member.isfile() and f"{directory}/" == EXAMPLES_DIR and name.endswith(".xml"):
                found[name] = archive.extractfile(member).read().decode("utf-8")
    return found


def test_the_examples_with_a_server_root_are_the_ones_tested(examples):
    server_roots = {name for name, text in examples.items() if ET.fromstring(text).tag == "Server"}
    assert server_roots == set(SERVER_EXAMPLES)


@pytest.mark.parametrize("name", SERVER_EXAMPLES)
def test_omes_own_examples_pass(examples, schema, name):
    assert check(examples[name], schema) == EXAMPLE_PROBLEMS.get(name, [])


@pytest.mark.parametrize("name", SERVER_EXAMPLES)
def test_every_element_of_the_examples_is_checked(examples, schema, name):
    """Renaming any element of an example is reported: nothing in them passes for want of a check."""
    root = ET.fromstring(examples[name])
    elements = [element for element in root.iter() if element is not root]
    for element in elements:
        original = element.tag
        element.tag = original + "Typo"
        problems = check(ET.tostring(root, encoding="unicode"), schema)
        element.tag = original
        assert any(f"<{original}Typo>" in problem for problem in problems), f"renaming <{original}> went unnoticed"
    assert len(elements) > 50


def edited(*replacements: tuple[str, str]) -> str:
    """PI_STREAM_SERVER_XML with each (old, new) replaced, each old found once."""
    xml = PI_STREAM_SERVER_XML
    for old, new in replacements:
        assert xml.count(old) == 1, old
        xml = xml.replace(old, new)
    return xml


def test_pi_stream_shape_passes(schema):
    assert check(PI_STREAM_SERVER_XML, schema) == []


@pytest.mark.parametrize("path", PI_STREAM_ELEMENTS)
def test_elements_pi_stream_uses_are_known(schema, path):
    element = schema.at(path)
    assert (element.value_type, element.repeats) == PI_STREAM_ELEMENTS[path]


def test_lists_are_repeated_children_of_a_plural_parent(schema):
    applications = schema.at("VirtualHosts/VirtualHost/Applications")
    assert not applications.repeats and list(applications.children) == ["Application"]
    assert applications.children["Application"].repeats
    assert schema.at("IP").repeats  # std::vector<ov::String> _ip_list: <IP> repeated in <Server> itself
    assert schema.attributes == {"version": False}


def test_a_misnamed_element_is_reported_with_its_path_and_a_suggestion(schema):
    xml = edited(("<Providers>\n            <RTMP />\n          </Providers>", "<Provider>\n            <RTMP />\n          </Provider>"))
    assert check(xml, schema) == [
        f"{APPLICATION}.Provider: unknown element <Provider> in <Application>; did you mean <Providers>?"]


def test_a_typo_in_a_protocol_name_is_reported(schema):
    [problem] = check(edited(("<RTMP />", "<Rtmpp />")), schema)
    assert problem.startswith(f"{APPLICATION}.Providers.Rtmpp: unknown element <Rtmpp> in <Providers>; did you mean <RTMP>")


def test_a_misplaced_element_is_pointed_to_where_it_belongs(schema):
    xml = edited(("<TcpForce>true</TcpForce>", ""), ("</IceCandidates>", "</IceCandidates><TcpForce>true</TcpForce>"))
    assert check(xml, schema) == [
        "Server.Bind.Publishers.WebRTC.TcpForce: unknown element <TcpForce> in <WebRTC>; allowed here: <IceCandidates>,"
        " <IceServers>, <Signalling>, <TcpRelayBind>; <TcpForce> belongs in Server.Bind.Providers.WebRTC.IceCandidates,"
        " Server.Bind.Publishers.WebRTC.IceCandidates"]


def test_a_wrong_path_in_the_schema_says_where_the_element_is(schema):
    with pytest.raises(KeyError, match=r"Server.Bind.Publishers.WebRTC has no child <TcpForce>; .*"
                                       r"<TcpForce> belongs in Server.Bind.Providers.WebRTC.IceCandidates"):
        schema.at("Bind/Publishers/WebRTC/TcpForce")


def test_a_repeated_single_element_is_reported(schema):
    assert check(edited(("<Port>1940</Port>", "<Port>1940</Port><Port>1941</Port>")), schema) == [
        "Server.Bind.Providers.RTMP.Port: <Port> appears 2 times in <RTMP>, but only one is allowed"
        " (OME reads the first and silently drops the rest)"]


def test_list_entries_may_repeat_and_are_numbered(schema):
    candidates = "<IceCandidate>*:10000/udp</IceCandidate>"
    assert check(edited((candidates, candidates + candidates.replace("10000", "10001"))), schema) == []
    second_application = "<Application><Name>b</Name><Type>live</Type><Providers><Rtmpp /></Providers></Application>"
    [problem] = check(edited(("</Application>", "</Application>" + second_application)), schema)
    assert problem.startswith("Server.VirtualHosts.VirtualHost[0].Applications.Application[1].Providers.Rtmpp: unknown element")


def test_elements_inside_a_value_are_reported(schema):
    assert check(edited(("<Port>1940</Port>", "<Port><Value>1940</Value></Port>")), schema) == [
        "Server.Bind.Providers.RTMP.Port: <Port> holds a text value (cfg::cmn::SingularPort) but contains the elements"
        " <Value>; OME reads only its text"]


def test_text_inside_a_struct_is_reported(schema):
    assert check(edited(("<RTMP>\n        <Port>", "<RTMP>1940\n        <Port>")), schema) == [
        "Server.Bind.Providers.RTMP: text '1940' inside <RTMP>, which holds elements, not a value (OME stops with 'Unknown item found')"]


def test_unknown_attributes_are_reported(schema):
    [problem] = check(edited(('<Server version="8">', '<Server version="8" verison="8">')), schema)
    assert problem.startswith("Server: unknown attribute verison= on <Server> (its attributes: version=;")


def test_required_elements_follow_omes_optional_inheritance(schema):
    # <Type> is registered without <Optional> in cfg::Server, and <Server> is read with allow_optional false.
    assert check(edited(("<Type>origin</Type>", "")), schema) == ["Server.Type: missing <Type>, which OME requires in <Server>"]
    # Each <Application> is a list entry, read afresh with allow_optional false: its <Name> is required...
    assert check(edited(("<Name>cameras</Name>", "")), schema) == [
        f"{APPLICATION}.Name: missing <Name>, which OME requires in <Application>"]
    # ...but <Managers> is <Optional> in <Server>, so nothing below it is: OME does not ask for its <Host>.
    assert check(edited(("<Host>\n      <Names>\n        <Name>*</Name>\n      </Names>\n    </Host>\n    <API>", "<API>")), schema) == []
    assert check(edited((' version="8"', "")), schema) == ["Server: missing attribute version= on <Server>, which OME requires"]


def test_optional_elements_whose_absence_ome_may_still_reject_are_marked(schema):
    """The optional callbacks of Register() that do more than return nullptr: all "required unless <Bypass>"."""
    encodes = "VirtualHosts.VirtualHost.Applications.Application.OutputProfiles.OutputProfile.Encodes"
    marked = {path.removeprefix(f"Server.{encodes}.") for path, element in schema.walk() if element.absence_callback}
    assert marked == {"Audio.Codec", "Audio.Bitrate", "Video.Codec", "Video.Bitrate"}


def test_ignored_and_included_elements_are_read_as_omes_engine_reads_them(schema):
    assert check(edited(("<RTMP />", '<RTMP /><Rtmpp ignore="true"><Anything /></Rtmpp>')), schema) == []
    # An included entry's content lives in other files: nothing is required of it here.
    assert check(edited(("<VirtualHosts>", '<VirtualHosts><VirtualHost include="VHost*.xml" />')), schema) == []


def test_every_problem_is_reported_at_once(schema):
    xml = edited(("<RTMP />", "<Rtmpp />"), ("<Port>1940</Port>", "<Port>1940</Port><Port>1</Port>"), ("<Type>origin</Type>", ""))
    assert [problem.split(":")[0] for problem in check(xml, schema)] == [
        "Server.Bind.Providers.RTMP.Port", f"{APPLICATION}.Providers.Rtmpp", "Server.Type"]


@pytest.mark.parametrize("text", ["<Server version='8'><Bind></Server>", "", "<Server>&bogus;</Server>"])
def test_malformed_xml_is_one_problem(schema, text):
    [problem] = check(text, schema)
    assert problem.startswith("malformed XML: ")


def test_a_root_other_than_server_is_reported(schema):
    assert check("<Logger version='2'/>", schema) == ["the root element is <Logger>, but OME reads <Server>"]


def test_the_schema_is_loaded_once_per_tarball(tarball):
    assert load_schema(tarball) is load_schema(tarball)


# -- the extractor on headers made up for the purpose -----------------------------------------------------


def source_tarball(directory: Path, headers: dict[str, str]) -> Path:
    """A tarball shaped like OME's source, holding only the given config item headers."""
    path = directory / "ome.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in headers.items():
            data = text.encode()
            member = tarfile.TarInfo(f"OvenMediaEngine-x/src/projects/config/items/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def server_header(members: str, registrations: str) -> str:
    return f"""
#pragma once
namespace cfg
{{
    struct Server : public Item
    {{
    protected:
        Attribute _version;
        {members}
        void MakeList() override
        {{
            Register("version", &_version);
            {registrations}
        }}
    }};
}}  // namespace cfg
"""


def test_templates_aliases_and_inheritance_are_followed(tmp_path):
    common = """
namespace cfg
{
    namespace cmn
    {
        template <typename Tvalue = int>
        struct Holder : public Item
        {
        protected:
            Tvalue _value{};
            void MakeList() override { Register("Value", &_value); }
        };
        struct Labelled : public Holder<bool>
        {
        protected:
            ov::String _label;
            void MakeList() override
            {
                Holder<bool>::MakeList();
                Register<Optional>({"Label", "label"}, &_label);
            }
        };
        using Names = std::vector<ov::String>;
    }
    // Never registered from Server: a type OME cannot read here does not matter.
    struct Unreachable : public Item { float _f; void MakeList() override { Register("F", &_f); } };
}
"""
    server = server_header("cmn::Holder<> _count; cmn::Labelled _flag; cmn::Names _names;",
                           'Register<Optional>("Count", &_count); Register({"Flag", "flag"}, &_flag); Register("Name", &_names);')
    schema = load_schema(source_tarball(tmp_path, {"common.h": common, "server.h": server}))
    assert schema.at("Count/Value").value_type == "int"
    assert schema.at("Flag/Value").value_type == "bool"
    assert schema.at("Flag/Label").optional
    assert schema.at("Name").repeats and schema.at("Name").value_type == "string"


@pytest.mark.parametrize(("members", "registrations", "message"), [
    ("mystery::Thing _thing;", 'Register("Thing", &_thing);', "cannot find 'mystery'"),
    ("float _ratio;", 'Register("Ratio", &_ratio);', "ProbeType has no specialization for float"),
    ("int _port;", 'if (true) Register("Port", &_port);', "MakeList() of cfg::Server has a statement this extractor does not understand"),
    ("int _port;", 'Register("Port", &_other);', "cfg::Server has no member _other"),
    ("int *_port;", 'Register("Port", &_port);', "is a pointer or a reference"),
])
def test_a_construct_the_extractor_cannot_read_fails_loudly(tmp_path, members, registrations, message):
    with pytest.raises(SchemaError, match="server.h:") as raised:
        load_schema(source_tarball(tmp_path, {"server.h": server_header(members, registrations)}))
    assert message in str(raised.value)
