"""OvenMediaEngine's Server.xml schema, read from OME's own C++ source, and a checker for Server.xml files.

OME has no XSD. Its configuration is a tree of C++ structs under src/projects/config/items/, each deriving
from cfg::Item and naming its XML children in MakeList():

    Register<Optional>({"RTMP", "rtmp"}, &_rtmp);      // XML name first, JSON name second

OME's loader (src/projects/config/engine/) maps the XML onto those structs. What this module models of
it, each point as read in the engine's sources:

- Lists: a member `std::vector<T>` registered as "X" is every <X> directly inside the parent
  (data_source.cpp, GetValueFromXml: `_node.children(name)`). There is no implicit wrapper: the plural
  parents (<Applications>, <IceCandidates>, ...) are structs of their own whose child is the list.
- Single children: OME reads the first matching element and silently drops any later one
  (ProcessNodes, and the ValueType::Item case). The checker reports the repeat, since OME never will.
- Unknown elements: OME refuses to start on an element its struct did not register
  (DataSource::CheckUnknownItems), and on non-blank text inside a struct's element, which pugixml keeps
  as a nameless child.
- Leaves: a member of type ov::String, int, int64_t, bool, double or a cfg::Text subclass (the ports)
  is an element whose text is the value (child_value()); a cfg::Attribute member is an XML attribute.
- `ignore="true"` on any element makes OME treat it as absent (NeedToIgnore); so does the checker.
- `include="pattern"` on a struct's element or on a list entry loads the content from other files
  (Item::FromDataSourceInternal, ListInterface::AddChildValueList).
- Required: a child registered without <Optional> must be present, unless an enclosing struct element
  was itself registered <Optional>: Item::FromDataSourceInternal passes `allow_optional || IsOptional()`
  down to a struct's children, and each list entry starts again from false (list.cpp).

Accepted loosely, on purpose:
- Register()'s callbacks are C++ lambdas and are not run, so a config they reject can pass: the checker
  reports a subset of OME's errors. Where a callback may reject an absent element, the Element says so
  (absence_callback: in 0.19.0, <Codec> and <Bitrate> of an <Audio> or <Video> encode without <Bypass>).
- Values are not parsed ("1935/tcp", "true", numbers): the schema is about structure.
- The content of include= files is not read, so nothing is required of an element that has include=.
- C++ that is not a declaration (function bodies, initializers, macros) is skipped, and so are members
  no MakeList() registers: none of it can change what is registered. Whatever a reachable element does
  depend on must resolve, or load_schema() raises SchemaError.
- A base class that is neither cfg::Item nor cfg::Text (cmn::CrossDomainSupport) is taken as a mixin
  that only brings members, which is all such a base can do for the config.
And stricter than OME, as these are mistakes even though OME says nothing: elements inside a leaf value,
attributes OME never reads, and repeated single elements.

API: load_schema(tarball) -> Element (the <Server> element, with the whole tree below it), and
check(xml_text, schema) -> list of problems, each starting with the element's path.
"""

from __future__ import annotations

import difflib
import functools
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ITEMS_DIR = "src/projects/config/items/"
ROOT_STRUCT = ("cfg", "Server")
ROOT_ELEMENT = "Server"

# Attributes OME's engine reads on any element, whatever its struct registers.
IGNORE_ATTRIBUTE = "ignore"
INCLUDE_ATTRIBUTE = "include"


class SchemaError(Exception):
    """The extractor met C++ it cannot map onto OME's config model, for an element reachable from <Server>."""


# ---------------------------------------------------------------------------------------------------------
# The schema tree
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Element:
    """One element of Server.xml as OME's C++ declares it."""

    name: str
    # "item" for an element made of child elements; otherwise what OME converts its text to:
    # "string", "int", "long", "bool", "double", or "text" (a cfg::Text subclass that parses its own
    # string, e.g. cmn::SingularPort for "1935/tcp").
    value_type: str
    repeats: bool  # registered as a std::vector: may appear any number of times in its parent
    optional: bool  # registered with <Optional>
    cpp_type: str
    registered_at: str  # header:line of the Register() call (of the struct, for the root)
    # Register() passes an optional callback: C++ that OME runs when the element is absent, and that may
    # still reject its absence (<Codec> and <Bitrate> of a non-bypass <Audio> encode). Not evaluated here.
    absence_callback: bool = False
    children: Mapping[str, Element] = field(default_factory=dict)
    attributes: Mapping[str, bool] = field(default_factory=dict)  # attribute name -> optional

    @property
    def is_leaf(self) -> bool:
        return self.value_type != "item"

    def at(self, path: str) -> Element:
        """The descendant at a "/"-separated path of element names below this one ("Bind/Providers/RTMP")."""
        element = self
        walked = [self.name]
        for name in path.strip("/").split("/"):
            if name not in element.children:
                raise KeyError(f"{'.'.join(walked)} has no child <{name}>{suggestion(name, element, self)}")
            element = element.children[name]
            walked.append(name)
        return element

    def walk(self, path: str = "") -> Iterator[tuple[str, Element]]:
        """(dotted path, element) for this element and every element below it."""
        path = path or self.name
        yield path, self
        for name, child in self.children.items():
            yield from child.walk(f"{path}.{name}")


# ---------------------------------------------------------------------------------------------------------
# Reading C++: a tokenizer, and a parser for the declarations the config headers are made of
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # "identifier", "string", "number", "char" or "punct"
    text: str
    line: int


_TOKEN_RE = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<line_comment>//[^\n]*)
    | (?P<block_comment>/\*.*?\*/)
    | (?P<preprocessor>\#(?:\\\n|[^\n])*)
    | (?P<raw_string>R"(?P<delimiter>[^(\s]*)\(.*?\)(?P=delimiter)")
    | (?P<string>"(?:\\.|[^"\\\n])*")
    | (?P<char>'(?:\\.|[^'\\\n])*')
    | (?P<identifier>[A-Za-z_]\w*)
    | (?P<number>\.?\d(?:[eEpP][+-]|[\w.'])*)
    | (?P<punct>::|->|[^\s\w])
    """,
    re.VERBOSE | re.DOTALL,
)
_SKIPPED = {"space", "line_comment", "block_comment", "preprocessor"}


def tokenize(text: str, header: str) -> list[Token]:
    tokens = []
    line = 1
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None:
            raise SchemaError(f"{header}:{line}: cannot tokenize {text[position:position + 20]!r}")
        kind = match.lastgroup  # the outer group: raw_string, not the delimiter inside it
        if kind not in _SKIPPED:
            tokens.append(Token("string" if kind == "raw_string" else kind, match.group(), line))
        line += match.group().count("\n")
        position = match.end()
    return tokens


@dataclass(frozen=True)
class NamePart:
    name: str
    template_args: tuple[TypeRef, ...] | None = None


@dataclass(frozen=True)
class TypeRef:
    """A type as a header wrote it: `std::vector<cmn::Option>`, `::ov::String`, `unsigned int`."""

    parts: tuple[NamePart, ...]
    absolute: bool = False  # written with a leading ::
    fundamental: bool = False  # a type built into C++ (int, unsigned long, ...): `parts` has one name
    indirect: bool = False  # a pointer or a reference
    text: str = ""

    def __str__(self) -> str:
        return self.text


FUNDAMENTAL_WORDS = {"void", "bool", "char", "short", "int", "long", "float", "double", "signed", "unsigned", "auto", "wchar_t"}
# Words of a declaration that say nothing about which type it is.
SPECIFIERS = {"const", "volatile", "mutable", "static", "inline", "constexpr", "virtual", "explicit", "typename",
              "extern", "thread_local", "friend", "struct", "class", "enum", "union"}


def split_top_level(tokens: list[Token], separator: str, angles: bool = True) -> list[list[Token]]:
    """Splits at `separator` outside (), {}, [] and, with `angles`, <>.

    Angle brackets are brackets only in declarations; in code (MakeList() bodies, their lambdas) `<` and
    `>` may be comparisons, so code is split with angles=False.
    """
    opening, closing = ({"(", "{", "[", "<"}, {")", "}", "]", ">"}) if angles else ({"(", "{", "["}, {")", "}", "]"})
    pieces: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.text in opening:
            depth += 1
        elif token.text in closing:
            depth -= 1
        if token.text == separator and depth == 0:
            pieces.append([])
        else:
            pieces[-1].append(token)
    return pieces


def parse_type(tokens: list[Token], header: str) -> TypeRef:
    text = " ".join(token.text for token in tokens)
    text = re.sub(r"\s*(::|<|>|,)\s*", lambda match: match.group(1) + (" " if match.group(1) == "," else ""), text)
    words = [token for token in tokens if token.text not in SPECIFIERS]
    depth = 0
    top_level = []
    indirect = False
    for token in words:
        depth += {"<": 1, ">": -1}.get(token.text, 0)
        if depth == 0 and token.text in ("*", "&", "&&"):
            indirect = True  # `std::vector<const X *>` is not itself a pointer: its argument is
        else:
            top_level.append(token)
    words = top_level
    if words and all(token.text in FUNDAMENTAL_WORDS for token in words):
        return TypeRef((NamePart(" ".join(token.text for token in words)),), fundamental=True, indirect=indirect, text=text)
    absolute = bool(words) and words[0].text == "::"
    words = words[1:] if absolute else words
    parts: list[NamePart] = []
    index = 0
    while index < len(words):
        token = words[index]
        if token.kind != "identifier":
            raise SchemaError(f"{header}:{token.line}: cannot read the type {text!r}")
        index += 1
        arguments = None
        if index < len(words) and words[index].text == "<":
            depth = 1
            start = index = index + 1
            while depth:
                if index >= len(words):
                    raise SchemaError(f"{header}:{token.line}: unbalanced <> in {text!r}")
                depth += {"<": 1, ">": -1}.get(words[index].text, 0)
                index += 1
            arguments = tuple(parse_type(piece, header) for piece in split_top_level(words[start:index - 1], ",") if piece)
        parts.append(NamePart(token.text, arguments))
        if index < len(words):
            if words[index].text != "::":
                raise SchemaError(f"{header}:{words[index].line}: cannot read the type {text!r}")
            index += 1
    if not parts:
        raise SchemaError(f"{header}: no type in {text!r}")
    return TypeRef(tuple(parts), absolute=absolute, indirect=indirect, text=text)


@dataclass(eq=False)
class Scope:
    name: str
    parent: Scope | None
    header: str = ""
    line: int = 0
    names: dict[str, object] = field(default_factory=dict)  # nested namespaces, structs, enums, aliases
    # A `using namespace` changes how names resolve. 0.19.0 has none; rather than model it, the resolver
    # refuses to look a name up through a scope that has one.
    using_directive: str = ""

    def qualified_name(self) -> str:
        names = []
        scope: Scope | None = self
        while scope is not None and scope.parent is not None:
            names.append(scope.name)
            scope = scope.parent
        return "::".join(reversed(names))

    @property
    def where(self) -> str:
        return f"{self.header}:{self.line}"


@dataclass(eq=False)
class Namespace(Scope):
    pass


@dataclass(eq=False)
class Enum(Scope):
    pass


@dataclass(eq=False)
class Alias(Scope):
    target: TypeRef | None = None  # None: a typedef this parser cannot read (function pointer, array)


@dataclass(frozen=True)
class TemplateParameter:
    name: str
    default: TypeRef | None


@dataclass(frozen=True)
class Field:
    name: str
    type: TypeRef | None  # None when the declaration could not be read; `unreadable` says why
    header: str
    line: int
    unreadable: str = ""


@dataclass(eq=False)
class Struct(Scope):
    template_parameters: tuple[TemplateParameter, ...] = ()
    bases: tuple[TypeRef, ...] = ()
    fields: dict[str, Field] = field(default_factory=dict)
    make_list_body: list[Token] | None = None
    make_list_declared: bool = False  # declared in the struct, whether or not with a body


@dataclass(frozen=True)
class Builtin:
    """A type defined outside the config items (the engine, ovlibrary, the standard library)."""

    kind: str  # an Element value_type, or "attribute", "item-base", "text-base", "vector"
    cpp_name: str


class HeaderParser:
    """Collects namespaces, structs (fields, bases, MakeList() bodies), enums and aliases of one header.

    Everything else (function bodies, initializers, macros such as CFG_DECLARE_CONST_REF_GETTER_OF) is
    skipped by balancing brackets. That is safe: a skipped construct that a reachable element depends
    on turns up later as a name the resolver cannot find, and loading fails.
    """

    def __init__(self, tokens: list[Token], header: str):
        self.tokens = tokens
        self.header = header
        self.position = 0

    def peek_text(self, offset: int = 0) -> str:
        index = self.position + offset
        return self.tokens[index].text if 0 <= index < len(self.tokens) else ""

    def take(self) -> Token:
        if self.position >= len(self.tokens):
            raise SchemaError(f"{self.header}: unexpected end of file")
        self.position += 1
        return self.tokens[self.position - 1]

    def expect(self, text: str) -> Token:
        token = self.take()
        if token.text != text:
            raise SchemaError(f"{self.header}:{token.line}: expected {text!r}, found {token.text!r}")
        return token

    def skip_balanced(self) -> list[Token]:
        """From an opening (, { or [ to its match; returns the tokens between."""
        opening = self.take()
        closing = {"(": ")", "{": "}", "[": "]"}[opening.text]
        depth = 1
        start = self.position
        while depth:
            text = self.take().text
            depth += (text == opening.text) - (text == closing)
        return self.tokens[start:self.position - 1]

    def skip_angle_brackets(self) -> list[Token]:
        """From < to its matching >: in declarations, where < and > are only template brackets."""
        self.expect("<")
        depth = 1
        start = self.position
        while depth:
            if self.peek_text() in ("(", "{", "["):
                self.skip_balanced()
                continue
            text = self.take().text
            depth += (text == "<") - (text == ">")
        return self.tokens[start:self.position - 1]

    def take_until(self, text: str) -> list[Token]:
        tokens = []
        while self.peek_text() != text:
            start = self.position
            if self.peek_text() in ("(", "{", "["):
                self.skip_balanced()
            else:
                self.take()
            tokens.extend(self.tokens[start:self.position])
        self.position += 1
        return tokens

    # -- declarations ----------------------------------------------------------------------------------

    def parse_into(self, global_scope: Namespace) -> None:
        self.parse_declarations(global_scope, closing=None)

    def parse_declarations(self, scope: Scope, closing: str | None) -> None:
        while True:
            text = self.peek_text()
            if text == "" and closing is not None:
                raise SchemaError(f"{self.header}: {scope.qualified_name()} is not closed")
            if text == closing or text == "":
                self.position += 1
                return
            start = self.position
            self.parse_declaration(scope)
            if self.position == start:
                # A token no declaration starts with (a `}` closing nothing): the header's structure is
                # not what this parser thinks, so nothing read from it can be trusted.
                raise SchemaError(f"{self.header}:{self.tokens[start].line}: unexpected {text!r}")

    def parse_declaration(self, scope: Scope) -> None:
        text = self.peek_text()
        if text == ";":
            self.position += 1
        elif text == "namespace":
            self.parse_namespace(scope)
        elif text in ("public", "protected", "private") and self.peek_text(1) == ":":
            self.position += 2
        elif text == "template":
            self.position += 1
            parameters = self.parse_template_parameters()
            if self.peek_text() in ("struct", "class") and self.is_class_definition():
                self.parse_struct(scope, parameters)
            else:
                # A function template: no config registrations in it. Its parameters are not types of
                # the enclosing scope, so its declaration is read into a throwaway one.
                self.parse_member_or_function(Scope("<template>", scope, self.header))
        elif text in ("struct", "class", "union") and self.is_class_definition():
            self.parse_struct(scope, ())
        elif text == "enum":
            self.parse_enum(scope)
        elif text == "using":
            self.parse_using(scope)
        elif text == "typedef":
            self.parse_typedef(scope)
        else:
            self.parse_member_or_function(scope)

    def is_class_definition(self) -> bool:
        """`struct Name [final] [: bases] {`, rather than `struct Name;` or `struct Name member;`."""
        offset = 1
        while True:
            text = self.peek_text(offset)
            if text in ("{", ":"):
                return True
            if text in (";", "", "(", "=", ",", "<", "*", "&"):
                return False  # `<`: an explicit specialization, which the config headers do not use
            offset += 1

    def parse_namespace(self, scope: Scope) -> None:
        self.expect("namespace")
        names = []
        while self.peek_text() not in ("{", ";", "=", ""):
            token = self.take()
            if token.text not in ("::", "inline"):
                names.append(token)
        if self.peek_text() != "{":
            self.take_until(";")  # a namespace alias (`namespace x = y;`): not used by the config headers
            return
        self.expect("{")
        inner = scope
        for token in names:
            existing = inner.names.get(token.text)
            if not isinstance(existing, Namespace):
                existing = Namespace(token.text, inner, self.header, token.line)
                inner.names[token.text] = existing
            inner = existing
        # An anonymous namespace leaves `inner` as the enclosing scope: its names are visible there.
        self.parse_declarations(inner, closing="}")

    def parse_template_parameters(self) -> tuple[TemplateParameter, ...]:
        parameters = []
        for tokens in split_top_level(self.skip_angle_brackets(), ","):
            if not tokens:
                continue
            default = None
            equals = next((index for index, token in enumerate(tokens) if token.text == "="), None)
            if equals is not None:
                default = parse_type(tokens[equals + 1:], self.header)
                tokens = tokens[:equals]
            parameters.append(TemplateParameter(tokens[-1].text, default))
        return tuple(parameters)

    def parse_struct(self, scope: Scope, template_parameters: tuple[TemplateParameter, ...]) -> None:
        self.take()  # struct, class or union
        name = self.take()
        while self.peek_text() == "final":
            self.position += 1
        bases: list[TypeRef] = []
        if self.peek_text() == ":":
            self.position += 1
            base_tokens = []
            while self.peek_text() != "{":
                if self.peek_text() == "<":
                    start = self.position
                    self.skip_angle_brackets()
                    base_tokens.extend(self.tokens[start:self.position])
                else:
                    base_tokens.append(self.take())
            for tokens in split_top_level(base_tokens, ","):
                bases.append(parse_type([token for token in tokens if token.text not in ("public", "protected", "private")], self.header))
        struct = Struct(name.text, scope, self.header, name.line, template_parameters=template_parameters, bases=tuple(bases))
        if name.text in scope.names and not isinstance(scope.names[name.text], Struct):
            raise SchemaError(f"{self.header}:{name.line}: struct {name.text} reuses the name of another declaration")
        scope.names[name.text] = struct
        self.expect("{")
        self.parse_declarations(struct, closing="}")
        self.take_until(";")  # `struct X {...} x;` would also declare x: the config headers do not do that

    def parse_enum(self, scope: Scope) -> None:
        self.expect("enum")
        if self.peek_text() in ("class", "struct"):
            self.position += 1
        name = self.take()
        self.take_until(";")
        scope.names[name.text] = Enum(name.text, scope, self.header, name.line)

    def parse_using(self, scope: Scope) -> None:
        start = self.expect("using")
        tokens = self.take_until(";")
        if tokens and tokens[0].text == "namespace":
            scope.using_directive = "".join(token.text for token in tokens[1:])
        elif len(tokens) >= 3 and tokens[1].text == "=":
            scope.names[tokens[0].text] = Alias(tokens[0].text, scope, self.header, start.line,
                                                target=parse_type(tokens[2:], self.header))
        # Anything else is a using-declaration (`using Item::IsParsed;`): it changes which overloads are
        # visible, not what a name means.

    def parse_typedef(self, scope: Scope) -> None:
        start = self.expect("typedef")
        tokens = self.take_until(";")
        names = [token for token in tokens if token.kind == "identifier"]
        if not names:
            raise SchemaError(f"{self.header}:{start.line}: cannot read this typedef")
        if any(token.text in ("(", "[") for token in tokens):
            # A function pointer or an array: no config item can register one. Recorded as an alias to
            # nothing, so that using it for a reachable element fails loudly.
            scope.names[names[-1].text] = Alias(names[-1].text, scope, self.header, start.line)
            return
        scope.names[tokens[-1].text] = Alias(tokens[-1].text, scope, self.header, start.line,
                                             target=parse_type(tokens[:-1], self.header))

    def parse_member_or_function(self, scope: Scope) -> None:
        """A data member (`Type _name = init;`), a function (declared, or defined with a body), or a macro."""
        prefix: list[Token] = []
        while True:
            text = self.peek_text()
            if text == "":
                return
            if text == "<":
                start = self.position
                self.skip_angle_brackets()
                prefix.extend(self.tokens[start:self.position])
            elif text == "operator":
                # `operator==(...)`, `operator()(...)`: the symbol is part of the function's name.
                prefix.append(self.take())
                while self.peek_text() != "(" or self.peek_text(1) == ")" and self.peek_text(2) == "(":
                    prefix.append(self.take())
            elif text == "(":
                self.parse_function_rest(scope, prefix)
                return
            elif text in (";", "=", "{", ",", "["):
                self.parse_member_rest(scope, prefix)
                return
            elif text == "}":
                return  # tokens left before the scope closes; they declared nothing
            else:
                prefix.append(self.take())

    # What may follow a function's parameter list. After a macro's arguments comes the next declaration.
    FUNCTION_SUFFIXES = {";", "{", ":", "=", "const", "override", "final", "noexcept", "->", "&", "&&", "volatile"}

    def parse_function_rest(self, scope: Scope, prefix: list[Token]) -> None:
        name = prefix[-1].text if prefix else ""
        self.skip_balanced()  # the parameters, or a macro's arguments
        if self.peek_text() not in self.FUNCTION_SUFFIXES:
            # CFG_DECLARE_CONST_REF_GETTER_OF(...) without a `;`, MAY_THROWS(...) before a function.
            return
        is_make_list = name == "MakeList" and isinstance(scope, Struct)
        while True:
            text = self.peek_text()
            if text in (";", ""):
                self.position += 1
                break
            if text == "{":
                body = self.skip_balanced()
                if is_make_list:
                    scope.make_list_body = body
                break
            if text == ":":
                self.skip_constructor_initializers()
            elif text == "=":  # = 0, = default, = delete
                self.take_until(";")
                break
            elif text in ("(", "["):
                self.skip_balanced()  # noexcept(...), attributes
            else:
                self.position += 1
        if is_make_list:
            scope.make_list_declared = True

    def skip_constructor_initializers(self) -> None:
        """`: _port(port), _list{1, 2}` up to the constructor's body."""
        self.expect(":")
        while self.peek_text() not in ("{", ""):
            self.take()  # the member or base named
            while self.peek_text() in ("::", "<") or self.peek_text(-1) == "::":
                if self.peek_text() == "<":
                    self.skip_angle_brackets()
                else:
                    self.take()
            if self.peek_text() in ("(", "{"):
                self.skip_balanced()
            if self.peek_text() == ",":
                self.take()

    def parse_member_rest(self, scope: Scope, prefix: list[Token]) -> None:
        declarators = [prefix]
        while True:
            text = self.peek_text()
            if text in (";", ""):
                self.position += 1
                break
            if text == "=":
                self.position += 1
                while self.peek_text() not in (";", ",", ""):
                    if self.peek_text() in ("(", "{", "["):
                        self.skip_balanced()
                    else:
                        self.position += 1
            elif text in ("{", "["):
                self.skip_balanced()
            elif text == ",":
                self.position += 1
                declarators.append([])
            else:
                declarators[-1].append(self.take())
        type_tokens = prefix[:-1]
        if not isinstance(scope, Struct) or not [token for token in type_tokens if token.text not in SPECIFIERS]:
            return  # namespace-scope variables, `friend class X;` and the like hold no config members
        try:
            member_type: TypeRef | None = parse_type(type_tokens, self.header)
            problem = ""
        except SchemaError as error:
            member_type, problem = None, str(error)
        for declarator in declarators:
            names = [token for token in declarator if token.kind == "identifier"]
            if names:
                scope.fields[names[-1].text] = Field(names[-1].text, member_type, self.header, names[-1].line, problem)


# ---------------------------------------------------------------------------------------------------------
# Resolving types: from what a header wrote to the struct it means, template arguments bound
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Instance:
    """A struct with its template arguments bound (cmn::Port<int>, bind::pvd::Provider<cmn::SingularPort>)."""

    struct: Struct
    arguments: tuple[object, ...] = ()  # resolved types, one per template parameter

    @functools.cached_property
    def bindings(self) -> dict[str, object]:
        return {parameter.name: argument for parameter, argument in zip(self.struct.template_parameters, self.arguments, strict=True)}

    def __str__(self) -> str:
        name = self.struct.qualified_name()
        return f"{name}<{', '.join(describe(argument) for argument in self.arguments)}>" if self.arguments else name


@dataclass(frozen=True)
class VectorOf:
    item: object


def describe(resolved: object) -> str:
    if isinstance(resolved, VectorOf):
        return f"std::vector<{describe(resolved.item)}>"
    if isinstance(resolved, Builtin):
        return resolved.cpp_name
    return str(resolved)


def describe_declaration(declaration: object) -> str:
    if isinstance(declaration, Scope):
        return f"{type(declaration).__name__.lower()} {declaration.qualified_name()} ({declaration.where})"
    return describe(declaration)


def engine_scope() -> Namespace:
    """The global scope, holding the few types the config items use from outside src/projects/config/items/.

    They are what engine/value_type.h's ProbeType gives a value type to, and the engine's base classes.
    Other outside types (enums from base/, std::map, ...) are absent on purpose: ProbeType maps them to
    ValueType::Unknown, which OME never reads, so registering one fails to resolve, loudly.
    """
    root = Namespace("", None, "<engine>")
    cfg, ov, std = (Namespace(name, root, "<engine>") for name in ("cfg", "ov", "std"))
    root.names.update({"cfg": cfg, "ov": ov, "std": std})
    cfg.names.update({
        "Item": Builtin("item-base", "cfg::Item"),
        "Text": Builtin("text-base", "cfg::Text"),
        "Attribute": Builtin("attribute", "cfg::Attribute"),
    })
    ov.names["String"] = Builtin("string", "ov::String")
    std.names["vector"] = Builtin("vector", "std::vector")
    for scope in (root, std):  # <cstdint>, with or without std::
        scope.names.update({"int32_t": Builtin("int", "int32_t"), "int64_t": Builtin("long", "int64_t")})
    return root


# ProbeType has specializations for int32_t and int64_t; on the LP64 platforms OME builds for (Linux on
# x86_64 and aarch64) those are `int` and `long`. Every other fundamental type (float, unsigned,
# long long, ...) falls back to ValueType::Unknown, which OME never reads.
FUNDAMENTAL_VALUE_TYPES = {"int": "int", "signed int": "int", "signed": "int", "long": "long", "long int": "long",
                           "signed long": "long", "bool": "bool", "double": "double"}


class Resolver:
    def __init__(self, global_scope: Namespace):
        self.global_scope = global_scope
        self.instances: dict[tuple[Struct, tuple[object, ...]], Instance] = {}

    def instance(self, struct: Struct, arguments: tuple[object, ...] = ()) -> Instance:
        """One Instance per struct and arguments, so that caches and the cycle check can use identity."""
        key = (struct, arguments)
        if key not in self.instances:
            self.instances[key] = Instance(struct, arguments)
        return self.instances[key]

    def resolve(self, ref: TypeRef, scope: Scope, bindings: Mapping[str, object], where: str) -> object:
        if ref.indirect:
            raise SchemaError(f"{where}: {ref} is a pointer or a reference; Register() has no overload for one")
        if ref.fundamental:
            name = ref.parts[0].name
            if name not in FUNDAMENTAL_VALUE_TYPES:
                raise SchemaError(f"{where}: ProbeType has no specialization for {name} (ValueType::Unknown): OME never reads it")
            return Builtin(FUNDAMENTAL_VALUE_TYPES[name], name)
        first = ref.parts[0]
        if not ref.absolute and len(ref.parts) == 1 and first.template_args is None and first.name in bindings:
            return bindings[first.name]
        declaration = self.global_scope.names.get(first.name) if ref.absolute else self.lookup(first.name, scope, where)
        if declaration is None:
            raise SchemaError(f"{where}: cannot find {first.name!r} (in {ref}) from {scope.qualified_name() or 'the global scope'}")
        last = first
        for part in ref.parts[1:]:
            if last.template_args is not None:
                raise SchemaError(f"{where}: member types of class templates ({ref}) are not supported")
            if not isinstance(declaration, Scope) or part.name not in declaration.names:
                raise SchemaError(f"{where}: cannot find {part.name!r} in {describe_declaration(declaration)} (in {ref})")
            declaration = declaration.names[part.name]
            last = part
        return self.instantiate(declaration, last.template_args, scope, bindings, where, ref)

    def instantiate(self, declaration: object, template_args: tuple[TypeRef, ...] | None, scope: Scope,
                    bindings: Mapping[str, object], where: str, ref: TypeRef) -> object:
        if isinstance(declaration, Alias):
            if declaration.target is None or template_args is not None:
                raise SchemaError(f"{where}: cannot resolve {ref} through the alias declared at {declaration.where}")
            return self.resolve(declaration.target, declaration.parent, {}, declaration.where)
        if isinstance(declaration, Builtin):
            if declaration.kind == "vector":
                if not template_args:
                    raise SchemaError(f"{where}: std::vector without an element type in {ref}")
                return VectorOf(self.resolve(template_args[0], scope, bindings, where))
            if template_args is not None:
                raise SchemaError(f"{where}: {declaration.cpp_name} takes no template arguments ({ref})")
            return declaration
        if isinstance(declaration, Struct):
            parameters = declaration.template_parameters
            given = template_args or ()
            if len(given) > len(parameters):
                raise SchemaError(f"{where}: {ref} has more template arguments than {declaration.qualified_name()}"
                                  f" ({declaration.where}) has parameters")
            arguments = [self.resolve(argument, scope, bindings, where) for argument in given]
            for parameter in parameters[len(arguments):]:
                if parameter.default is None:
                    raise SchemaError(f"{where}: {ref} gives no {parameter.name} to {declaration.qualified_name()}"
                                      f" ({declaration.where})")
                # A default is written in the template's scope and may use the parameters before it.
                earlier = dict(zip((p.name for p in parameters), arguments, strict=False))
                arguments.append(self.resolve(parameter.default, declaration.parent, earlier, declaration.where))
            return self.instance(declaration, tuple(arguments))
        if isinstance(declaration, Enum):
            raise SchemaError(f"{where}: {ref} is an enum ({declaration.where}); ProbeType has no specialization for it")
        raise SchemaError(f"{where}: {ref} names {describe_declaration(declaration)}, not a type")

    def lookup(self, name: str, scope: Scope, where: str) -> object | None:
        """Unqualified name lookup: the scope (and a struct's bases), then each enclosing scope."""
        current: Scope | None = scope
        while current is not None:
            if current.using_directive:
                raise SchemaError(f"{where}: `using namespace {current.using_directive}` in {current.qualified_name()}"
                                  f" ({current.where}): this extractor does not model using-directives")
            if name in current.names:
                return current.names[name]
            if isinstance(current, Struct):
                if any(parameter.name == name for parameter in current.template_parameters):
                    raise SchemaError(f"{where}: the template parameter {name} of {current.qualified_name()} has no argument here")
                found = self.lookup_in_bases(name, current, where)
                if found is not None:
                    return found
            current = current.parent
        return None

    def lookup_in_bases(self, name: str, struct: Struct, where: str) -> object | None:
        """A nested name declared in a base (template arguments cannot change which names a base has)."""
        for base in struct.bases:
            declaration = None if base.absolute else self.lookup(base.parts[0].name, struct.parent, where)
            for part in base.parts[1:]:
                declaration = declaration.names.get(part.name) if isinstance(declaration, Scope) else None
            if isinstance(declaration, Struct):
                if name in declaration.names:
                    return declaration.names[name]
                found = self.lookup_in_bases(name, declaration, where)
                if found is not None:
                    return found
        return None

    def bases(self, instance: Instance) -> list[object]:
        # Base names are looked up from the enclosing scope (from the struct itself, lookup would recurse
        # into these same bases), with the struct's template parameters bound.
        return [self.resolve(base, instance.struct.parent, instance.bindings, instance.struct.where) for base in instance.struct.bases]


# ---------------------------------------------------------------------------------------------------------
# From structs to elements: reading MakeList() bodies
# ---------------------------------------------------------------------------------------------------------

REGISTER_ANNOTATIONS = {"Optional", "ResolvePath", "OmitJsonName"}  # engine/annotations.h


@dataclass(frozen=True)
class Registration:
    xml_name: str
    json_name: str
    member: str
    optional: bool
    absence_callback: bool
    owner: Instance  # the struct whose MakeList() made the call: the member is looked up from it
    where: str


class SchemaBuilder:
    def __init__(self, global_scope: Namespace):
        self.global_scope = global_scope
        self.resolver = Resolver(global_scope)
        self.kinds: dict[Instance, str] = {}
        self.registered: dict[Instance, tuple[Registration, ...]] = {}

    def root(self) -> Element:
        declaration: object = self.global_scope
        for name in ROOT_STRUCT:
            declaration = declaration.names.get(name) if isinstance(declaration, Scope) else None
        if not isinstance(declaration, Struct):
            raise SchemaError(f"no struct {'::'.join(ROOT_STRUCT)} under {ITEMS_DIR}")
        root = self.resolver.instance(declaration)
        return self.element(ROOT_ELEMENT, root, optional=False, repeats=False, where=declaration.where, inside=())

    def kind(self, resolved: object, where: str) -> str:
        """Which Register() overload takes the type: "list", "item", "attribute", or a leaf's value type."""
        if isinstance(resolved, VectorOf):
            return "list"
        if isinstance(resolved, Builtin):
            if resolved.kind in ("item-base", "text-base", "vector"):
                raise SchemaError(f"{where}: {resolved.cpp_name} itself cannot be registered")
            return resolved.kind
        if resolved not in self.kinds:
            kinds = {self.base_kind(base, where) for base in self.resolver.bases(resolved)} - {None}
            if len(kinds) != 1:
                raise SchemaError(f"{where}: {resolved} ({resolved.struct.where}) derives from neither cfg::Item nor"
                                  " cfg::Text, or from both: Register() has no overload for it")
            self.kinds[resolved] = kinds.pop()
        return self.kinds[resolved]

    def base_kind(self, base: object, where: str) -> str | None:
        if isinstance(base, Builtin) and base.kind in ("item-base", "text-base"):
            return "item" if base.kind == "item-base" else "text"
        if isinstance(base, Instance) and any(self.base_kind(grand, where) for grand in self.resolver.bases(base)):
            return self.kind(base, where)
        return None  # a mixin such as cmn::CrossDomainSupport: it brings members, not a kind

    def element(self, name: str, resolved: object, optional: bool, repeats: bool, where: str,
                inside: tuple[Instance, ...], absence_callback: bool = False) -> Element:
        kind = self.kind(resolved, where)
        if kind == "list":
            if repeats or self.kind(resolved.item, where) in ("list", "attribute"):
                raise SchemaError(f"{where}: {describe(resolved)}: OME has no lists of lists or of attributes")
            return self.element(name, resolved.item, optional, True, where, inside, absence_callback)
        if kind == "attribute":
            raise SchemaError(f"{where}: an attribute is not an element")
        if kind != "item":
            return Element(name, kind, repeats, optional, describe(resolved), where, absence_callback)
        if resolved in inside:
            cycle = " -> ".join(str(instance) for instance in (*inside, resolved))
            raise SchemaError(f"{where}: a config struct contains itself ({cycle})")
        children: dict[str, Element] = {}
        attributes: dict[str, bool] = {}
        for registration in self.registrations(resolved):
            member_type = self.member_type(registration)
            if self.kind(member_type, registration.where) == "attribute":
                attributes[registration.xml_name] = registration.optional
            else:
                children[registration.xml_name] = self.element(registration.xml_name, member_type, registration.optional, False,
                                                               registration.where, (*inside, resolved), registration.absence_callback)
        return Element(name, "item", repeats, optional, describe(resolved), where, absence_callback, children, attributes)

    def member_type(self, registration: Registration) -> object:
        """The resolved type of `&member` in Register(): a field of the registering struct or of its bases."""
        found = self.find_field(registration.member, registration.owner)
        if found is None:
            raise SchemaError(f"{registration.where}: {registration.owner} has no member {registration.member}, nor do its bases")
        member, owner = found
        where = f"{member.header}:{member.line}"
        if member.type is None:
            raise SchemaError(f"{where}: the declaration of {member.name} could not be read: {member.unreadable}")
        return self.resolver.resolve(member.type, owner.struct, owner.bindings, where)

    def find_field(self, name: str, instance: Instance) -> tuple[Field, Instance] | None:
        if name in instance.struct.fields:
            return instance.struct.fields[name], instance
        for base in self.resolver.bases(instance):
            found = self.find_field(name, base) if isinstance(base, Instance) else None
            if found is not None:
                return found
        return None

    def registrations(self, instance: Instance) -> tuple[Registration, ...]:
        """What MakeList() registers, kept the way Item::AddChild() keeps it: a later Register() of the
        same name replaces the earlier one."""
        if instance in self.registered:
            return self.registered[instance]
        struct = instance.struct
        if struct.make_list_body is None:
            if struct.make_list_declared:
                raise SchemaError(f"{struct.where}: {instance} declares MakeList() without defining it in its header")
            item_bases = [base for base in self.resolver.bases(instance) if self.base_kind(base, struct.where) == "item"]
            if len(item_bases) != 1 or not isinstance(item_bases[0], Instance):
                raise SchemaError(f"{struct.where}: {instance} has no MakeList(), nor a single cfg::Item base to inherit one from")
            self.registered[instance] = self.registrations(item_bases[0])
            return self.registered[instance]
        by_name: dict[str, Registration] = {}
        for statement in split_top_level(struct.make_list_body, ";", angles=False):
            for registration in self.statement_registrations(statement, instance) if statement else ():
                previous = by_name.pop(registration.xml_name, None)
                if previous is not None and previous.json_name != registration.json_name:
                    raise SchemaError(f"{registration.where}: <{registration.xml_name}> is registered twice with different"
                                      " JSON names; OME would read the element into both members")
                by_name[registration.xml_name] = registration
        self.registered[instance] = tuple(by_name.values())
        return self.registered[instance]

    def statement_registrations(self, statement: list[Token], instance: Instance) -> list[Registration]:
        struct = instance.struct
        where = f"{struct.header}:{statement[0].line}"
        texts = [token.text for token in statement]
        # `Item::Register<...>(...)` (used where a template base hides the name) is the same Register().
        for qualifier in (["Item", "::"], ["cfg", "::", "Item", "::"], ["this", "->"]):
            if texts[:len(qualifier)] == qualifier:
                statement, texts = statement[len(qualifier):], texts[len(qualifier):]
        if texts[0] == "Register":
            return [self.parse_register(statement, instance, where)]
        if texts[-4:] == ["::", "MakeList", "(", ")"] and len(texts) > 4:
            # `Base::MakeList();` or `Provider<cmn::RangedPort>::MakeList();`: the base's registrations, here.
            base = self.resolver.resolve(parse_type(statement[:-4], struct.header), struct.parent, instance.bindings, where)
            if base not in self.all_bases(instance):
                raise SchemaError(f"{where}: {describe(base)}::MakeList() is not the MakeList() of a base of {instance}")
            return list(self.registrations(base))
        raise SchemaError(f"{where}: MakeList() of {instance} has a statement this extractor does not understand:"
                          f" {' '.join(texts)[:120]}")

    def all_bases(self, instance: Instance) -> list[object]:
        found = []
        for base in self.resolver.bases(instance):
            found.append(base)
            if isinstance(base, Instance):
                found.extend(self.all_bases(base))
        return found

    def parse_register(self, statement: list[Token], instance: Instance, where: str) -> Registration:
        index = 1
        annotations: list[str] = []
        if statement[index].text == "<":
            close = next(position for position in range(index, len(statement)) if statement[position].text == ">")
            annotations = [token.text for token in statement[index + 1:close] if token.text != ","]
            index = close + 1
        if set(annotations) - REGISTER_ANNOTATIONS:
            raise SchemaError(f"{where}: unknown Register() annotations {sorted(set(annotations) - REGISTER_ANNOTATIONS)}")
        if statement[index].text != "(" or statement[-1].text != ")":
            raise SchemaError(f"{where}: cannot read this Register() call")
        arguments = split_top_level(statement[index + 1:-1], ",", angles=False)
        if len(arguments) < 2:
            raise SchemaError(f"{where}: Register() with fewer than two arguments")
        xml_name, json_name = item_name(arguments[0], where)
        member = arguments[1]
        if len(member) != 2 or member[0].text != "&" or member[1].kind != "identifier":
            raise SchemaError(f"{where}: Register() of {' '.join(token.text for token in member)!r}: only `&member` is understood")
        # Arguments 3 and 4 are the optional and validation callbacks: C++ code, not run (see the top). That
        # there is an optional callback is recorded, as it may make an <Optional> element required.
        absence_callback = len(arguments) > 2 and may_reject_absence(arguments[2])
        return Registration(xml_name, json_name, member[1].text, "Optional" in annotations, absence_callback, instance, where)


def may_reject_absence(callback: list[Token]) -> bool:
    """False for `nullptr` and for a lambda that only returns nullptr (which accepts the absence)."""
    texts = [token.text for token in callback]
    body = texts[texts.index("{"):] if "{" in texts else texts
    return texts != ["nullptr"] and body != ["{", "return", "nullptr", ";", "}"]


def item_name(tokens: list[Token], where: str) -> tuple[str, str]:
    """An ItemName: "Name" (the JSON name lowers the first letter, item_name.cpp), {"Name"}, or {"XmlName", "jsonName"}."""
    strings = [token for token in tokens if token.kind == "string"]
    shape = ["S" if token.kind == "string" else token.text for token in tokens]
    if shape not in (["S"], ["{", "S", "}"], ["{", "S", ",", "S", "}"]):
        raise SchemaError(f"{where}: cannot read the item name {' '.join(token.text for token in tokens)!r}")
    for token in strings:
        if not token.text.startswith('"') or "\\" in token.text:
            raise SchemaError(f"{where}: cannot read the string literal {token.text}")
    names = [token.text[1:-1] for token in strings]
    xml_name = names[0]
    return xml_name, names[1] if len(names) == 2 else xml_name[:1].lower() + xml_name[1:]


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------


def read_headers(tarball: Path) -> dict[str, str]:
    """The config item headers of an OME source tarball, by path below its top folder."""
    headers = {}
    with tarfile.open(tarball, "r:*") as archive:
        for member in archive:
            path = member.name.partition("/")[2]
            if member.isfile() and path.startswith(ITEMS_DIR) and path.endswith(".h"):
                headers[path] = archive.extractfile(member).read().decode("utf-8")
    if not headers:
        raise SchemaError(f"{tarball}: no headers under <top folder>/{ITEMS_DIR}")
    return headers


@functools.lru_cache(maxsize=8)
def load_schema(tarball: Path) -> Element:
    """The <Server> element of Server.xml, with everything below it, from an OME source tarball."""
    global_scope = engine_scope()
    for path, text in sorted(read_headers(Path(tarball)).items()):
        HeaderParser(tokenize(text, path), path).parse_into(global_scope)
    return SchemaBuilder(global_scope).root()


# ---------------------------------------------------------------------------------------------------------
# Checking a Server.xml
# ---------------------------------------------------------------------------------------------------------


def check(xml_text: str, schema: Element) -> list[str]:
    """Every problem of a Server.xml against the schema, each starting with the element's path."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as error:
        return [f"malformed XML: {error}"]
    if root.tag != schema.name:
        return [f"the root element is <{root.tag}>, but OME reads <{schema.name}>"]
    problems: list[str] = []
    Checker(schema, problems).element(root, schema, schema.name, allow_optional=False)
    return problems


def is_ignored(node: ET.Element) -> bool:
    return node.get(IGNORE_ATTRIBUTE) == "true"  # NeedToIgnore(): exactly "true"


@dataclass
class Checker:
    root: Element
    problems: list[str]

    def element(self, node: ET.Element, schema: Element, path: str, allow_optional: bool) -> None:
        if schema.is_leaf:
            self.leaf(node, schema, path)
            return
        for attribute in node.attrib:
            if attribute not in {*schema.attributes, IGNORE_ATTRIBUTE, INCLUDE_ATTRIBUTE}:
                known = ", ".join(f"{name}=" for name in sorted(schema.attributes)) or "none of its own"
                self.problems.append(f"{path}: unknown attribute {attribute}= on <{node.tag}> (its attributes: {known};"
                                     f" OME ignores any other but {IGNORE_ATTRIBUTE}= and {INCLUDE_ATTRIBUTE}=)")
        stray = " ".join(text.strip() for text in [node.text or "", *(child.tail or "" for child in node)] if text.strip())
        if stray:
            self.problems.append(f"{path}: text {shorten(stray)!r} inside <{node.tag}>, which holds elements, not a value"
                                 " (OME stops with 'Unknown item found')")

        present: dict[str, list[ET.Element]] = {}
        for child in node:
            if not is_ignored(child):
                present.setdefault(child.tag, []).append(child)
        for name, nodes in present.items():
            child_schema = schema.children.get(name)
            if child_schema is None:
                for index in range(len(nodes)):
                    numbered = f"{path}.{name}" + (f"[{index}]" if len(nodes) > 1 else "")
                    self.problems.append(f"{numbered}: unknown element <{name}> in <{node.tag}>{suggestion(name, schema, self.root)}")
                continue
            if not child_schema.repeats and len(nodes) > 1:
                self.problems.append(f"{path}.{name}: <{name}> appears {len(nodes)} times in <{node.tag}>, but only one is"
                                     " allowed (OME reads the first and silently drops the rest)")
            for index, child in enumerate(nodes):
                numbered = f"{path}.{name}" + (f"[{index}]" if child_schema.repeats or len(nodes) > 1 else "")
                # Each list entry is read with allow_optional reset to false; a single struct passes it on,
                # raised by its own <Optional> (Item::FromDataSourceInternal, list.cpp).
                self.element(child, child_schema, numbered, False if child_schema.repeats else allow_optional or child_schema.optional)

        if allow_optional or INCLUDE_ATTRIBUTE in node.attrib:
            return  # with include=, the content is in other files: OME reads them, the checker cannot
        for name, child_schema in schema.children.items():
            if not child_schema.optional and name not in present:
                self.problems.append(f"{path}.{name}: missing <{name}>, which OME requires in <{node.tag}>")
        for attribute, optional in schema.attributes.items():
            if not optional and attribute not in node.attrib:
                self.problems.append(f"{path}: missing attribute {attribute}= on <{node.tag}>, which OME requires")

    def leaf(self, node: ET.Element, schema: Element, path: str) -> None:
        inner = [child.tag for child in node if not is_ignored(child)]
        if inner:
            names = ", ".join(f"<{name}>" for name in dict.fromkeys(inner))
            self.problems.append(f"{path}: <{node.tag}> holds a {schema.value_type} value ({schema.cpp_type}) but contains"
                                 f" the elements {names}; OME reads only its text")
        # A value reads no attribute but ignore=; a list entry may also be include=d (AddChildValueList).
        allowed = {IGNORE_ATTRIBUTE, INCLUDE_ATTRIBUTE} if schema.repeats else {IGNORE_ATTRIBUTE}
        for attribute in node.attrib:
            if attribute not in allowed:
                self.problems.append(f"{path}: attribute {attribute}= on <{node.tag}>, a {schema.value_type} value, which OME never reads")


def shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


@functools.lru_cache(maxsize=8)
def paths_by_name(root: Element) -> dict[str, list[str]]:
    """Where each element name is allowed in the whole schema, to point a misplaced element to its place."""
    paths: dict[str, list[str]] = {}
    for path, _element in root.walk():
        parent, _, name = path.rpartition(".")
        if parent:
            paths.setdefault(name, []).append(parent)
    return paths


def suggestion(name: str, parent: Element, root: Element) -> str:
    """"; did you mean <X>?" from the names allowed in `parent`, and where else in the schema <name> belongs."""
    by_lower: dict[str, str] = {}
    for allowed in parent.children:
        by_lower.setdefault(allowed.lower(), allowed)
    # Compared without case: <Rtmp> is as much a typo of <RTMP> as <Rtmpp> is.
    close = [by_lower[match] for match in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)]
    if close:
        hints = ["did you mean " + " or ".join(f"<{match}>" for match in close) + "?"]
    elif parent.children:
        hints = ["allowed here: " + ", ".join(f"<{allowed}>" for allowed in sorted(parent.children))]
    else:
        hints = [f"<{parent.name}> has no child elements"]
    elsewhere = paths_by_name(root).get(name, [])
    if elsewhere:
        shown = sorted(elsewhere, key=lambda path: (len(path), path))[:3]
        more = f" and {len(elsewhere) - 3} more places" if len(elsewhere) > 3 else ""
        hints.append(f"<{name}> belongs in " + ", ".join(shown) + more)
    return "; " + "; ".join(hints)
