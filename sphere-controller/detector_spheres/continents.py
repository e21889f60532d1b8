"""The five default spheres and the countries each one exits from.

ISO 3166-1 alpha-2 codes, lower case, as Tor's ExitNodes {cc} syntax wants
them. Each country is in exactly one sphere. Transcontinental countries go
where most of their Tor relays are (Russia and Cyprus: Europe; Turkey and the
Caucasus: Asia). The last five codes of EXTRA are not ISO country codes but
appear in Tor's GeoIP database (ap, eu: regional blocks; an, cs: withdrawn
codes; uk: reserved for gb), so relays tagged with them still belong somewhere.
"""

CONTINENTS = [
    ("asia",
     "ae af am az bd bh bn bt cc cn cx ge hk id il in io iq ir jo jp kg kh "
     "kp kr kw kz la lb lk mm mn mo mv my np om ph pk ps qa sa sg sy th tj "
     "tl tm tr tw uz vn ye ap"),
    ("europe",
     "ad al at ax ba be bg by ch cy cz de dk ee es fi fo fr gb gg gi gr hr "
     "hu ie im is it je li lt lu lv mc md me mk mt nl no pl pt ro rs ru se "
     "si sj sk sm ua va eu cs uk"),
    ("north-america",
     "ag ai aw bb bl bm bq bs bz ca cr cu cw dm do gd gl gp gt hn ht jm kn "
     "ky lc mf mq ms mx ni pa pm pr sv sx tc tt us vc vg vi an"),
    ("africa-south-america",
     "ao bf bi bj bw cd cf cg ci cm cv dj dz eg eh er et ga gh gm gn gq gw "
     "ke km lr ls ly ma mg ml mr mu mw mz na ne ng re rw sc sd sh sl sn so "
     "ss st sz td tg tn tz ug yt za zm zw "
     "ar bo br cl co ec fk gf gy pe py sr uy ve"),
    ("oceania-antarctica",
     "as au ck fj fm gu ki mh mp nc nf nr nu nz pf pg pn pw sb tk to tv um "
     "vu wf ws "
     "aq bv gs hm tf"),
]

EXTRA = {"ap", "eu", "an", "cs", "uk"}

DEFAULT_SPHERES = [(name, codes.split()) for name, codes in CONTINENTS]

COUNTRY_CODES = frozenset(c for _, codes in DEFAULT_SPHERES for c in codes)
