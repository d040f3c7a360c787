"""budu.cli.gotemplate: the Go text/template docker users type in --format, each case a template
and its data against the exact output (or the exact one-line error) Go and docker give."""

from __future__ import annotations

import pytest

from budu.cli import format as fmt
from budu.cli import gotemplate
from budu.cli.gotemplate import Map, TemplateError, render
from budu.errors import ConfigError

CONTAINER = {
    "ID": "3f4e5d6c7b8a9f0e1d2c",
    "Name": "web",
    "Image": "busybox:latest",
    "State": {"Status": "running", "Running": True, "Pid": 1234, "ExitCode": 0, "Health": None},
    "Config": {"Cmd": ["sh", "-c", "echo hi"], "Env": [], "Labels": Map({"b": "2", "a": "1"})},
    "NetworkSettings": {"Networks": Map({"bridge": {"IPAddress": "172.17.0.2"}, "app": {"IPAddress": "10.0.0.5"}})},
    "Mounts": [{"Source": "/a", "Destination": "/x"}, {"Source": "/b", "Destination": "/y"}],
}


def case(template: str, expected: str, data: object = CONTAINER, id: str | None = None):
    return pytest.param(template, data, expected, id=id or template[:60])


TEXT_AND_FIELDS = [
    case("", ""),
    case("plain text", "plain text"),
    case("a }} b {", "a }} b {", id="a right delimiter outside an action is text"),
    case("{{.Name}}", "web"),
    case("a {{.Name}} b", "a web b"),
    case("{{ .Name }}", "web"),
    case("{{.Name\n}}", "web", id="newline inside an action"),
    case("{{.State.Status}}", "running"),
    case("{{.NetworkSettings.Networks.bridge.IPAddress}}", "172.17.0.2"),
    case("{{.State.Running}} {{.State.Pid}} {{.State.ExitCode}}", "true 1234 0"),
    case("{{.State.Health}}", "<nil>", id="a field present but null"),
    case("{{.Config.Cmd}}", "[sh -c echo hi]"),
    case("{{.Config.Env}}", "[]"),
    case("{{.Config.Labels}}", "map[a:1 b:2]", id="maps print with sorted keys"),
    case("{{.Config.Labels.a}}", "1"),
    case("{{.Config.Labels.nope}}", "<no value>", id="a Map's missing key"),
    case("{{.Config.Labels.nope.deeper}}", "<no value>"),
    case("{{.}}", "map[a:[x <nil>] b:1]", {"b": 1, "a": ["x", None]}),
    case("{{.}}", "[map[a:2 b:1] [1 2] true]", [{"b": 1, "a": 2}, [1, 2], True]),
    case("{{.}}", "just a string", "just a string"),
    case("{{$}}", "root", "root"),
    case("{{range .Mounts}}{{$.Name}}{{.Source}} {{end}}", "web/a web/b "),
    case("{{.F}}", "1.5", {"F": 1.5}),
    case("{{.F}}", "3", {"F": 3.0}),
    case("{{.F}}", "-2.5", {"F": -2.5}),
    case("{{.F}}", "123456", {"F": 123456.0}),
    case("{{.F}}", "1e+06", {"F": 1e6}),
    case("{{.F}}", "1.234567e+06", {"F": 1234567.0}),
    case("{{.F}}", "0.0001", {"F": 0.0001}),
    case("{{.F}}", "1e-05", {"F": 0.00001}),
    case("{{.F}}", "0.30000000000000004", {"F": 0.1 + 0.2}),
    case("{{.F}}", "+Inf", {"F": float("inf")}),
    case("{{.F}}", "NaN", {"F": float("nan")}),
    case("{{.F}}", "0", {"F": 0.0}),
]

TRIM_AND_COMMENTS = [
    case("a  {{- .Name -}}  b", "awebb"),
    case("a\n\t {{- .Name}}", "aweb"),
    case("{{.Name -}}\n\n  x", "webx"),
    case("{{.Name -}}", "web"),
    case(" x {{- /* a comment */ -}} y ", " xy "),
    case("{{/* a\nmulti-line comment */}}z", "z"),
    case("{{-3}}", "-3", id="-3 is a number, not a trim marker"),
    case("a {{- 3}}", "a3"),
    case("{{ -3 }}", "-3"),
    case("{{.Name}}\n{{- range .Config.Cmd}}\n  {{.}}\n{{- end}}\n", "web\n  sh\n  -c\n  echo hi\n"),
]

VARIABLES = [
    case("{{$x := .Name}}{{$x}}", "web"),
    case("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
    case("{{$x := .State}}{{$x.Status}}", "running"),
    case("{{with $s := .State}}{{$s.Pid}}{{end}}", "1234"),
    case("{{$n := len .Mounts}}{{$n}}", "2"),
    case("{{$a := 1}}{{$b := 2}}{{$a}}{{$b}}", "12"),
]

RANGE = [
    case("{{range $i, $e := .Config.Cmd}}{{$i}}:{{$e}} {{end}}", "0:sh 1:-c 2:echo hi "),
    case("{{range $e := .Config.Cmd}}{{$e}},{{end}}", "sh,-c,echo hi,", id="one variable is the element"),
    case("{{range .Config.Cmd}}[{{.}}]{{end}}", "[sh][-c][echo hi]"),
    case("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=1;b=2;", id="maps range in key order"),
    case("{{range .Config.Labels}}{{.}}{{end}}", "12"),
    case("{{range $name, $net := .NetworkSettings.Networks}}{{$name}}:{{$net.IPAddress}} {{end}}",
         "app:10.0.0.5 bridge:172.17.0.2 "),
    case("{{range .M}}{{.}}{{end}}", "123", {"M": {"c": 3, "a": 1, "b": 2}}),
    case("{{range .Config.Env}}x{{else}}none{{end}}", "none"),
    case("{{range .L}}x{{else}}none{{end}}", "none", {"L": None}),
    case("{{range .Config.Labels.nope}}x{{else}}none{{end}}", "none"),
    case("{{range 3}}{{.}}{{end}}", "012"),
    case("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}{{.Name}}", "/a:/x /b:/y web",
         id="dot is restored after range"),
    case("{{range .L}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}", "13",
         {"L": [1, 2, 3, 4, 5]}),
    case("{{range $i, $m := .Mounts}}{{range $.Config.Cmd}}{{$i}}{{end}}{{end}}", "000111"),
    case("{{range $i, $e := .L}}{{end}}{{len .L}}", "2", {"L": ["a", "b"]}),
]

CONDITIONALS = [
    case("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    case("{{if .State.ExitCode}}failed{{else}}ok{{end}}", "ok"),
    case('{{if eq .State.Status "exited"}}E{{else if eq .State.Status "running"}}R{{else}}?{{end}}', "R"),
    case('{{if eq .S "a"}}A{{else if eq .S "b"}}B{{else if eq .S "c"}}C{{else}}?{{end}}', "?", {"S": "z"}),
    case("{{if and .State.Running (not .State.ExitCode)}}healthy{{end}}", "healthy"),
    case("{{if or .Config.Env .Config.Cmd}}some{{end}}", "some"),
    case("{{with .State}}{{.Status}}/{{.Pid}}{{end}}", "running/1234"),
    case("{{with .Config.Env}}{{.}}{{else}}no env{{end}}", "no env"),
    case("{{with .A}}a{{else with .B}}b={{.}}{{else}}c{{end}}", "b=x", {"A": "", "B": "x"}),
    case("{{with .A}}a{{else with .B}}b{{else}}c{{end}}", "c", {"A": "", "B": 0}),
    case("{{if index .Config.Labels \"nope\"}}yes{{else}}no{{end}}", "no"),
] + [
    case("{{if .V}}T{{else}}F{{end}}", want, {"V": value}, id=f"truth of {value!r}")
    for value, want in [(0, "F"), (0.0, "F"), ("", "F"), ([], "F"), ({}, "F"), (None, "F"), (False, "F"),
                        (1, "T"), (0.5, "T"), ("0", "T"), ([0], "T"), ({"a": 0}, "T"), (True, "T")]
]

PIPELINES = [
    case("{{.Name | upper}}", "WEB"),
    case('{{.Name | printf "%s!"}}', "web!"),
    case('{{.Name | printf "%s-%s" "x"}}', "x-web", id="the piped value is the last argument"),
    case('{{.Name | upper | printf "[%s]"}}', "[WEB]"),
    case('{{"a,b" | split ","}}', "[,]"),
    case('{{index (index .NetworkSettings.Networks "bridge") "IPAddress"}}', "172.17.0.2"),
    case("{{(index .Mounts 1).Source}}", "/b"),
    case("{{(index .Mounts 1).Source | upper}}", "/B"),
    case('{{len (split .Image ":")}}', "2"),
    case('{{printf "%d mounts" (len .Mounts)}}', "2 mounts"),
    case('{{(printf "%s" .Name)}}', "web"),
    case('{{$x := (index .Mounts 0)}}{{$x.Destination}}', "/x"),
]

DOCKER_FUNCS = [
    case("{{json .}}", '{"Name":"web","N":1,"F":1.5,"B":true,"Z":null,"L":["a",1],"E":{},"M":{"a":1,"b":2}}',
         {"Name": "web", "N": 1, "F": 1.5, "B": True, "Z": None, "L": ["a", 1], "E": {}, "M": Map(b=2, a=1)},
         id="json keeps a struct's order and sorts a map's keys"),
    case("{{json .Config.Cmd}}", '["sh","-c","echo hi"]'),
    case("{{json .Config.Labels}}", '{"a":"1","b":"2"}'),
    case("{{json .State.Health}}", "null"),
    case('{{json (index .Config.Labels "nope")}}', "null"),
    case("{{json .S}}", '"<a&b> \\n\\t\\"\\\\ \\u0001\\u2028 é\\b"', {"S": "<a&b> \n\t\"\\ \x01\u2028 é\b"},
         id="json escapes like docker's encoder, without HTML escaping"),
    case("{{json .F}}", "3", {"F": 3.0}),
    case("{{json .F}}", "100000000000000000000", {"F": 1e20}),
    case("{{json .F}}", "1e+21", {"F": 1e21}),
    case("{{json .F}}", "0.000001", {"F": 1e-6}),
    case("{{json .F}}", "1e-7", {"F": 1e-7}),
    case("{{json .F}}", "-1.5e-10", {"F": -1.5e-10}),
    case("{{json .F}}", "", {"F": float("nan")}, id="docker's json gives nothing for what Go cannot encode"),
    case("{{json .}}", '{"A":1}', {"A": lambda: 1}, id="json calls a method field"),
    case('{{join .Config.Cmd ", "}}', "sh, -c, echo hi"),
    case('{{join .Config.Env ","}}', ""),
    case('{{split .Image ":"}}', "[busybox latest]"),
    case('{{index (split .Image ":") 0}}', "busybox"),
    case('{{split "abc" ""}}', "[a b c]"),
    case('{{split "" ","}}', "[]"),
    case('{{title "hello wORLD foo_bar x-y"}}', "Hello WORLD Foo_bar X-Y"),
    case('{{lower "ABC déF"}} {{upper "straße"}}', "abc déf STRAßE"),
    case('{{pad .Name 2 3}}|', "  web   |"),
    case('{{pad "" 2 3}}|', "|"),
    case("{{truncate .ID 12}}", "3f4e5d6c7b8a"),
    case('{{truncate "ab" 3}}', "ab"),
    case('{{println "a" 1 true}}', "a 1 true\n"),
    case('{{println}}', "\n"),
]

GO_BUILTINS = [
    case('{{print "a" "b" 1 2 "c" true}}', "ab1 2ctrue"),
    case('{{print .Config.Cmd 1}}', "[sh -c echo hi] 1"),
    case("{{index .Config.Cmd 1}}", "-c"),
    case('{{index .NetworkSettings.Networks "app" "IPAddress"}}', "10.0.0.5", id="index with several keys"),
    case('{{index .Config.Labels "nope"}}', "<no value>"),
    case('{{index .State "Nope"}}', "<no value>", id="index on a missing key is <no value>, not an error"),
    case('{{index "abc" 1}}', "98"),
    case("{{index .M 2}}", "two", {"M": {1: "one", 2: "two"}}),
    case("{{len .Name}} {{len .Config.Cmd}} {{len .Config.Labels}}", "3 3 2"),
    case("{{slice .Config.Cmd 1 2}}", "[-c]"),
    case("{{slice .Config.Cmd 1}}", "[-c echo hi]"),
    case("{{slice .Config.Cmd}}", "[sh -c echo hi]"),
    case('{{slice "hello" 1 3}}', "el"),
    case("{{not .State.Running}} {{not 0}} {{not \"\"}}", "false true true"),
    case('{{and 1 "x"}} {{and 1 0 "x"}} {{and .Name .Image}}', "x 0 busybox:latest"),
    case('{{or "" 0 "y"}} {{or "" 0}} {{or .Name .Missing}}', "y 0 web", id="or stops at the first true argument"),
    case("{{and false .Missing}}", "false", id="and stops at the first false argument"),
    case('{{eq .Name "web"}} {{eq .Name "db"}} {{eq .Name "db" "api" "web"}}', "true false true"),
    case("{{eq .State.Pid 1234}} {{ne .State.Pid 1}} {{eq .State.ExitCode 0.0}}", "true true true"),
    case("{{eq .State.Health nil}} {{eq (index .Config.Labels \"x\") nil}}", "true true"),
    case('{{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 2 3}} {{lt "a" "b"}} {{gt 1.5 1}}', "true true false false true true"),
    case('{{html "<a href=\\"x\\">Tom & Jerry\'s</a>"}}', "&lt;a href=&#34;x&#34;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"),
    case('{{js "a\'b\\"c<d>=&"}}', "a\\'b\\\"c\\u003Cd\\u003E\\u003D\\u0026"),
    case('{{urlquery "a b&c=d/é"}}', "a+b%26c%3Dd%2F%C3%A9"),
    case('{{.Label "com.example.role"}}', "label com.example.role", {"Label": lambda k: "label " + k},
         id="a callable field is a method with arguments"),
    case('{{.Size}}', "10B", {"Size": lambda: "10B"}),
    case("{{.Name}}", "a", {"Name": "a", "Size": lambda: 1 / 0}, id="a method nobody names is never called"),
]

PRINTF = [
    case('{{printf "%s|%d|%v|%q" "a" 42 .Config.Cmd "hi"}}', 'a|42|[sh -c echo hi]|"hi"'),
    case('{{printf "%5s|%-5s|%.3s|%5.1s|" "ab" "ab" "abcdef" "xyz"}}', "   ab|ab   |abc|    x|"),
    case('{{printf "%x %X %#x %x %x" 255 255 255 -255 "hi"}}', "ff FF 0xff -ff 6869"),
    case('{{printf "% x|%X" "hi" "hi"}}', "68 69|6869"),
    case('{{printf "%05d|%-4d|%04d|%+d|% d|%3d|%.3d" 42 7 -7 7 7 5 5}}', "00042|7   |-007|+7| 7|  5|005"),
    case('{{printf "%#o %O %b %c %U %q" 8 8 5 65 128512 120}}', "010 0o10 101 A U+1F600 'x'"),
    case('{{printf "%.2f|%8.3f|%08.3f|%f" 3.14159 3.14159 -3.14159 2.5}}', "3.14|   3.142|-003.142|2.500000"),
    case('{{printf "%e|%.1E|%+.1e" 1234.5678 0.000123 12345.0}}', "1.234568e+03|1.2E-04|+1.2e+04"),
    case('{{printf "%g|%g|%g|%.3g|%G" 100000.0 1e6 0.5 1234.0 1e-7}}', "100000|1e+06|0.5|1.23e+03|1E-07"),
    case('{{printf "%v|%v|%v" 1.0 1e3 .5}}', "1|1000|0.5"),
    case('{{printf "%t|%6t|%v" true false true}}', "true| false|true"),
    case('{{printf "%T %T %T %T %T %T %T" "a" 1 1.5 true .Config.Cmd .Config.Labels nil}}',
         "string int float64 bool []interface {} map[string]interface {} <nil>"),
    case('{{printf "%v %s" .Config.Labels .Config.Labels}}', "map[a:1 b:2] map[a:1 b:2]"),
    case('{{printf "%d" .L}}', "[1 2]", {"L": [1, 2]}),
    case('{{printf "%q" .Config.Cmd}}', '["sh" "-c" "echo hi"]'),
    case('{{printf "%*d|%-*d|" 5 42 4 7}}', "   42|7   |"),
    case('{{printf "100%%"}}', "100%"),
    case('{{printf "%q" "a\\"b\\n\\x01é"}}', '"a\\"b\\n\\x01é"'),
    case('{{printf "%+q" "é"}}', '"\\u00e9"'),
    case('{{printf "%#q" "a b"}}', "`a b`"),
    case('{{printf "%5.1f|%-7.2f|" .F .F}}', "  2.5|2.50   |", {"F": 2.5}),
    case('{{printf "%v %v" .F .G}}', "+Inf NaN", {"F": float("inf"), "G": float("nan")}),
    # Go's %! errors are part of the output, not failures
    case('{{printf "%d" "x"}}', "%!d(string=x)"),
    case('{{printf "%s" true}}', "%!s(bool=true)"),
    case('{{printf "%d" 1.5}}', "%!d(float64=1.5)"),
    case('{{printf "%s %s" "a"}}', "a %!s(MISSING)"),
    case('{{printf "a" 1 "b"}}', "a%!(EXTRA int=1, string=b)"),
    case('{{printf "x%"}}', "x%!(NOVERB)"),
    case('{{printf "%s|%v" nil nil}}', "%!s(<nil>)|<nil>"),
    case('{{printf "%z" 1}}', "%!z(int=1)"),
]

LITERALS = [
    case('{{"a\\tb\\u00e9\\x41\\101\\\\"}}', "a\tbéAA\\"),
    case("{{`a\\tb {{ }}`}}", "a\\tb {{ }}"),
    case("{{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}} {{-7}} {{+7}}", "31 15 15 5 1000 -7 7"),
    case("{{1.5}} {{1e3}} {{.5}} {{1.0}} {{-0.25}} {{1e100}}", "1.5 1000 0.5 1 -0.25 1e+100"),
    case("{{'a'}} {{'\\n'}} {{'\\''}} {{'é'}}", "97 10 39 233"),
    case("{{true}} {{false}}", "true false"),
    case("{{print nil}}", "<nil>"),
    case('{{"}}"}}', "}}", id="delimiters inside a string"),
]

TEMPLATES = [
    case('{{define "row"}}{{.Source}};{{end}}{{range .Mounts}}{{template "row" .}}{{end}}', "/a;/b;"),
    case('{{define "t"}}[{{.}}]{{end}}{{template "t" .Name}}{{template "t" 1}}', "[web][1]"),
    case('{{define "t"}}{{.}}{{end}}{{template "t"}}', "<no value>"),
    case('{{block "b" .Name}}<{{.}}>{{end}}', "<web>"),
    case('{{define "t"}}{{$}}{{end}}{{$x := 1}}{{template "t" .State.Pid}}', "1234",
         id="a template's $ is what it was given"),
]


@pytest.mark.parametrize("template,data,expected", TEXT_AND_FIELDS + TRIM_AND_COMMENTS + VARIABLES + RANGE
                         + CONDITIONALS + PIPELINES + DOCKER_FUNCS + GO_BUILTINS + PRINTF + LITERALS + TEMPLATES)
def test_render(template: str, data: object, expected: str) -> None:
    assert render(template, data) == expected


PARSE_ERRORS = [
    ("{{.Name}", 'template: :1: unexpected "}" in operand'),
    ("{{.Name", "template: :1: unclosed action"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{if .A}}x", "template: :1: unexpected EOF"),
    ("{{range .A}}x{{else}}y{{else}}z{{end}}", "template: :1: expected end; found {{else}}"),
    ("{{nope .A}}", 'template: :1: function "nope" not defined'),
    ("{{$x}}", 'template: :1: undefined variable "$x"'),
    ("{{if true}}{{$y := 1}}{{end}}{{$y}}", 'template: :1: undefined variable "$y"'),
    ("{{}}", "template: :1: missing value for command"),
    ("{{ }}", "template: :1: missing value for command"),
    ("{{if}}{{end}}", "template: :1: missing value for if"),
    ("{{range}}{{end}}", "template: :1: missing value for range"),
    ("{{if .A}}{{else if}}{{end}}", "template: :1: missing value for if"),
    ('{{"abc}}', "template: :1: unterminated quoted string"),
    ("{{`abc}}", "template: :1: unterminated raw quoted string"),
    ("{{'a}}", "template: :1: unterminated character constant"),
    ("{{/* x }}", "template: :1: unclosed comment"),
    ("{{/* x */ }}", "template: :1: comment ends before closing delimiter"),
    ("{{.A | 3}}", "template: :1: non executable command in pipeline stage 2"),
    ("{{(.A}}", "template: :1: unclosed left paren"),
    ("{{.A)}}", "template: :1: unexpected right paren"),
    ("{{.A #}}", 'template: :1: unexpected "#" in operand'),
    ("{{.A.}}", "template: :1: unexpected <.> in operand"),
    ("{{.A+}}", "template: :1: bad character U+002B '+'"),
    ("{{3x}}", 'template: :1: bad number syntax: "3x"'),
    ("{{08}}", 'template: :1: integer overflow: "08"'),
    ("{{-}}", 'template: :1: illegal number syntax: "-"'),
    ('{{"\\q"}}', "template: :1: invalid syntax"),
    ("{{'ab'}}", "template: :1: malformed character constant: 'ab'"),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ('{{range .L}}{{block "b" .}}{{break}}{{end}}{{end}}', "template: :1: {{break}} outside {{range}}"),
    ("{{range .L}}{{else}}{{continue}}{{end}}", "template: :1: {{continue}} outside {{range}}"),
    ("{{range .L}}{{continue 1}}{{end}}", 'template: :1: unexpected "1" in {{continue}}'),
    ("{{range $i, $e, $f := .L}}{{end}}", "template: :1: too many declarations in range"),
    ("{{with $x, $y := .}}{{end}}", "template: :1: too many declarations in with"),
    ('{{"x".Y}}', 'template: :1: unexpected . after term "\\"x\\""'),
    ("{{if .A}}\n\n{{.B}", 'template: :3: unexpected "}" in operand'),
    ("{{define \"t\"}}x", "template: :1: unexpected EOF"),
    ("{{range .L}}{{define \"t\"}}{{end}}{{end}}", "template: :1: unexpected <define> in command"),
    ("{{template .X}}", "template: :1: unexpected \".X\" in template clause"),
    ("{{.A :}}", "template: :1: expected :="),
    ("{{.A \x01}}", "template: :1: unrecognized character in action: U+0001"),
    ("{{.A\n\n", "template: :3: unclosed action started at :1"),
    ("{{if .A}}\n{{\n.B\n\x01}}{{end}}",
     "template: :4: unrecognized character in action: U+0001 in action started at :2"),
]


@pytest.mark.parametrize("template,message", PARSE_ERRORS, ids=[t for t, _ in PARSE_ERRORS])
def test_parse_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        gotemplate.parse(template)
    assert str(e.value) == message
    assert isinstance(e.value, ConfigError)


NEVER = {"Fail": lambda: (_ for _ in ()).throw(ValueError("boom"))}

EXEC_ERRORS = [
    ("{{.Missing}}", CONTAINER,
     'template: :1:2: executing "" at <.Missing>: can\'t evaluate field Missing in type map[string]interface {}'),
    ("{{.State.Missing}}", CONTAINER,
     'template: :1:2: executing "" at <.State.Missing>: can\'t evaluate field Missing in type map[string]interface {}'),
    ("x\n  {{.Missing}}", CONTAINER,
     'template: :2:4: executing "" at <.Missing>: can\'t evaluate field Missing in type map[string]interface {}'),
    ("{{.Name.First}}", CONTAINER,
     'template: :1:2: executing "" at <.Name.First>: can\'t evaluate field First in type string'),
    ("{{.State.Health.Status}}", CONTAINER,
     'template: :1:2: executing "" at <.State.Health.Status>: nil pointer evaluating interface {}.Status'),
    ("{{$x := 1}}{{$x.Foo}}", CONTAINER,
     'template: :1:13: executing "" at <$x.Foo>: can\'t evaluate field Foo in type int'),
    ("{{index .Config.Cmd 5}}", CONTAINER,
     'template: :1:2: executing "" at <index .Config.Cmd 5>: error calling index: index out of range: 5'),
    ('{{index .Name "x"}}', CONTAINER,
     'template: :1:2: executing "" at <index .Name "x">: error calling index: '
     'cannot index slice/array with type string'),
    ("{{index .State.Pid 1}}", CONTAINER,
     'template: :1:2: executing "" at <index .State.Pid 1>: error calling index: can\'t index item of type int'),
    ("{{index .State.Health 1}}", CONTAINER,
     'template: :1:2: executing "" at <index .State.Health 1>: error calling index: index of untyped nil'),
    ('{{index .Config.Labels 1}}', CONTAINER,
     'template: :1:2: executing "" at <index .Config.Labels 1>: error calling index: value has type int; '
     'should be string'),
    ('{{join .Name ","}}', CONTAINER,
     'template: :1:7: executing "" at <.Name>: wrong type for value; expected []string; got string'),
    ("{{upper .State.Pid}}", CONTAINER,
     'template: :1:8: executing "" at <.State.Pid>: wrong type for value; expected string; got int'),
    ('{{.State.Pid | upper}}', CONTAINER,
     'template: :1:15: executing "" at <upper>: wrong type for value; expected string; got int'),
    ("{{upper .State.Health}}", CONTAINER,
     'template: :1:8: executing "" at <.State.Health>: invalid value; expected string'),
    ("{{upper}}", CONTAINER, 'template: :1:2: executing "" at <upper>: wrong number of args for upper: want 1 got 0'),
    ('{{pad "x" 1}}', CONTAINER,
     'template: :1:2: executing "" at <pad>: wrong number of args for pad: want 3 got 2'),
    ('{{truncate .Name "x"}}', CONTAINER, 'template: :1:17: executing "" at <"x">: expected integer; found "x"'),
    ("{{truncate .Name 1.5}}", CONTAINER, 'template: :1:17: executing "" at <1.5>: expected integer; found 1.5'),
    ("{{upper 1}}", CONTAINER, 'template: :1:8: executing "" at <1>: expected string; found 1'),
    ("{{upper nil}}", CONTAINER, 'template: :1:8: executing "" at <nil>: cannot assign nil to string'),
    ("{{eq .Name 1}}", CONTAINER,
     'template: :1:2: executing "" at <eq .Name 1>: error calling eq: incompatible types for comparison'),
    ("{{eq .Config.Cmd .Config.Cmd}}", CONTAINER,
     'template: :1:2: executing "" at <eq .Config.Cmd .Config.Cmd>: error calling eq: invalid type for comparison'),
    ("{{eq 1}}", CONTAINER,
     'template: :1:2: executing "" at <eq 1>: error calling eq: missing argument for comparison'),
    ("{{lt true false}}", CONTAINER,
     'template: :1:2: executing "" at <lt true false>: error calling lt: invalid type for comparison'),
    ('{{lt 1 "a"}}', CONTAINER,
     'template: :1:2: executing "" at <lt 1 "a">: error calling lt: incompatible types for comparison'),
    ("{{len .State.Pid}}", CONTAINER,
     'template: :1:2: executing "" at <len .State.Pid>: error calling len: len of type int'),
    ("{{len .State.Health}}", CONTAINER,
     'template: :1:2: executing "" at <len .State.Health>: error calling len: len of nil pointer'),
    ("{{slice .Config.Cmd 2 1}}", CONTAINER,
     'template: :1:2: executing "" at <slice .Config.Cmd 2 1>: error calling slice: invalid slice index: 2 > 1'),
    ("{{slice .Config.Cmd 9}}", CONTAINER,
     'template: :1:2: executing "" at <slice .Config.Cmd 9>: error calling slice: index out of range: 9'),
    ("{{.Name 1}}", CONTAINER, 'template: :1:2: executing "" at <.Name>: Name is not a method but has arguments'),
    ('{{"x" 1}}', CONTAINER, 'template: :1:2: executing "" at <"x">: can\'t give argument to non-function "x"'),
    ("{{. 1}}", CONTAINER, 'template: :1:2: executing "" at <.>: can\'t give argument to non-function .'),
    ("{{nil}}", CONTAINER, 'template: :1:2: executing "" at <nil>: nil is not a command'),
    ("{{range .Name}}{{end}}", CONTAINER, 'template: :1:8: executing "" at <.Name>: range can\'t iterate over web'),
    ("{{range $i, $e := 3}}{{end}}", CONTAINER,
     'template: :1:8: executing "" at <$i, $e := 3>: can\'t use 3 to iterate over more than one variable'),
    ('{{template "nope"}}', CONTAINER,
     'template: :1:11: executing "" at <{{template "nope"}}>: template "nope" not defined'),
    ('{{define "t"}}{{.X}}{{end}}{{template "t" .}}', CONTAINER,
     'template: :1:16: executing "t" at <.X>: can\'t evaluate field X in type map[string]interface {}'),
    ('{{define "t"}}{{template "t" .}}{{end}}{{template "t" .}}', CONTAINER,
     'template: :1:25: executing "t" at <{{template "t" .}}>: exceeded maximum template depth (100)'),
    ("{{.Fail}}", NEVER, 'template: :1:2: executing "" at <.Fail>: error calling Fail: boom'),
    ('{{call .Name}}', CONTAINER,
     'template: :1:2: executing "" at <call .Name>: error calling call: non-function of type string'),
    ("{{`a\nb` 1}}", CONTAINER,
     'template: :1:2: executing "" at <`a\\nb`>: can\'t give argument to non-function `a\\nb`'),
    ("{{and}}", CONTAINER,
     'template: :1:2: executing "" at <and>: wrong number of args for and: want at least 1 got 0'),
    ('{{pad .Name -1 0}}', CONTAINER,
     'template: :1:2: executing "" at <pad .Name -1 0>: error calling pad: strings: negative Repeat count'),
]


@pytest.mark.parametrize("template,data,message", EXEC_ERRORS, ids=[t for t, _, _ in EXEC_ERRORS])
def test_execution_errors(template: str, data: object, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        render(template, data)
    assert str(e.value) == message
    assert "\n" not in str(e.value)


def test_parsed_templates_are_cached() -> None:
    assert gotemplate.parse("{{.Name}} cached") is gotemplate.parse("{{.Name}} cached")


def test_a_template_runs_once_per_object() -> None:
    tpl = gotemplate.parse("{{.ID}}:{{range .L}}{{.}}{{end}}")
    assert [tpl.execute({"ID": i, "L": list(range(i))}) for i in range(3)] == ["0:", "1:0", "2:01"]


def test_variables_do_not_leak_between_executions() -> None:
    tpl = gotemplate.parse("{{$x := .}}{{if .}}{{$x = 9}}{{end}}{{$x}}")
    assert (tpl.execute(1), tpl.execute(0), tpl.execute(2)) == ("9", "0", "9")


# ---------------------------------------------------------------------------------------------
# budu.cli.format: the --format forms of the list and inspect commands

ROWS = [{"ID": "abc", "Names": "web", "Image": "busybox:latest", "Ports": []},
        {"ID": "defghi", "Names": "db", "Image": "postgres:16", "Ports": ["5432/tcp"]}]
HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Ports": "PORTS"}


def test_render_turns_typed_escapes_into_tab_and_newline() -> None:
    assert fmt.render("{{.Name}}\\t{{.Image}}\\n", CONTAINER) == "web\tbusybox:latest\n"


def test_render_reports_docker_s_message() -> None:
    with pytest.raises(ConfigError) as e:
        fmt.render("{{.Name}", CONTAINER)
    assert str(e.value) == 'template parsing error: template: :1: unexpected "}" in operand'
    with pytest.raises(ConfigError) as e:
        fmt.render("{{.Nope}}", CONTAINER)
    assert str(e.value) == ('template parsing error: template: :1:2: executing "" at <.Nope>: '
                            "can't evaluate field Nope in type map[string]interface {}")


def test_rows_without_table_are_one_line_each() -> None:
    assert fmt.format_rows("{{.ID}} {{.Names}}", ROWS, HEADERS) == "abc web\ndefghi db\n"
    assert fmt.format_rows("  {{.ID}}  ", ROWS, HEADERS) == "abc\ndefghi\n"  # docker trims spaces
    assert fmt.format_rows("{{.ID}}\\t{{.Names}}", ROWS, HEADERS) == "abc\tweb\ndefghi\tdb\n"
    assert fmt.format_rows("{{.ID}}", [], HEADERS) == ""


def test_json_format_is_one_object_per_line() -> None:
    assert fmt.format_rows("json", ROWS[:1], HEADERS) == \
        '{"ID":"abc","Names":"web","Image":"busybox:latest","Ports":[]}\n'


def test_table_prints_headers_and_aligns_columns() -> None:
    assert fmt.format_rows("table {{.ID}}\\t{{.Names}}", ROWS, HEADERS) == (
        "CONTAINER ID   NAMES\n"
        "abc            web\n"
        "defghi         db\n")


def test_table_header_for_a_field_without_one_is_its_name_in_capitals() -> None:
    assert fmt.format_rows("table {{.Names}}\\t{{.Status}}", [{"Names": "web", "Status": "Up"}], HEADERS) == (
        "NAMES     STATUS\n"
        "web       Up\n")  # docker's tabwriter: cells at least 10 wide


def test_table_header_keeps_text_and_names_through_docker_s_header_functions() -> None:
    template = ("table id={{.ID}}\\t{{.Names | upper}}\\t{{json .Image}}\\t{{truncate .ID 2}}\\t"
                "{{join .Ports \",\"}}\\t{{pad .Names 1 0}}|")
    assert fmt.format_rows(template, ROWS, HEADERS) == (
        "id=CONTAINER ID   NAMES     IMAGE              CONTAINER ID   PORTS       NAMES|\n"
        "id=abc            WEB       \"busybox:latest\"   ab                         web|\n"
        "id=defghi         DB        \"postgres:16\"      de             5432/tcp    db|\n")


def test_table_header_survives_range_and_conditionals() -> None:
    template = "table {{.ID}}\\t{{range .Ports}}{{.}} {{end}}\\t{{if .Names}}{{.Names}}{{end}}"
    assert fmt.format_rows(template, ROWS, HEADERS) == (
        "CONTAINER ID               NAMES\n"
        "abc                        web\n"
        "defghi         5432/tcp    db\n")


def test_bare_table_is_the_default_columns_and_no_rows_still_prints_the_header() -> None:
    assert fmt.format_rows("table", [], {"ID": "IMAGE ID", "Size": "SIZE"}) == "IMAGE ID   SIZE\n"


def test_methods_run_only_for_the_rows_that_name_them() -> None:
    calls = []

    def size() -> str:
        calls.append(1)
        return "1kB"

    rows = [{"ID": "abc", "Size": size}]
    assert fmt.format_rows("table {{.ID}}", rows, HEADERS) == "CONTAINER ID\nabc\n"
    assert calls == []
    assert fmt.format_rows("table {{.ID}}\t{{.Size}}", rows, {"Size": "SIZE"}) == "ID        SIZE\nabc       1kB\n"
    assert calls == [1]  # once for the row; the header row never calls it


def test_table_errors_are_docker_s() -> None:
    with pytest.raises(ConfigError) as e:
        fmt.format_rows("table {{.Nope}}", ROWS, HEADERS)
    assert str(e.value).startswith('template parsing error: template: :1:2: executing "" at <.Nope>:')


def test_header_row_ends_where_docker_s_would_fail() -> None:
    # docker's header json takes a string; given the whole object it fails and the header stops there
    assert gotemplate.parse("A{{json .}}B").header({}) == "A"
    assert gotemplate.parse("{{.Labels.role}}").header({"Labels.role": "ROLE"}) == "ROLE"
    assert gotemplate.parse('{{.Label "x"}}').header({}) == "LABEL"
