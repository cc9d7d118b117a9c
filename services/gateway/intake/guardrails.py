"""Guardrails: a transparent rule layer decided in code, before and after the model.

``screen`` looks at the student's message before any model call; the interviewer answers distress,
homework requests, prompt injection and off-topic chatter from the templates here, never from the
model. ``check_reply`` / ``check_partial`` look at what the model wrote before the student sees it.
The rules are plain regular expressions so a professor can read exactly what triggers what; a
better model can only add to them, never loosen them.

False positives matter too: "kill the process", "dead code", "execute the script", "the 2008
financial crisis" are course talk, not distress or attacks.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import Literal
from urllib.parse import quote

import msgspec
import regex as _regex  # type: ignore[import-untyped]

from services.coursepack import Course
from services.gateway.intake.matching import assignments_named
from services.gateway.intake.text import STOPWORDS, question_text, sentences, similar

Kind = Literal["distress", "check_in", "injection", "homework", "person", "off_topic", "reschedule", "ok"]


class Verdict(msgspec.Struct, frozen=True):
    """What the screen decided and which rule fired (a rule name, never the student's text)."""

    kind: Kind
    rule: str = ""


_DISTRESS: tuple[tuple[str, str], ...] = (
    (
        "suicide",
        r"\bsuicid\w*\b(?! mission)|\bkill(?:ing)? my ?self\b|\bkms\b|\bunalive\b|\bend(?:ing)? (?:it all|my life)\b|"
        r"\btake my (?:own )?life\b",
    ),
    (
        "want_to_die",
        r"\b(?:want|wanna|ready) (?:to )?die\b|\bhow (?:i'?m|i am|i'?ll|to) (?:going to |gonna )?die\b|"
        r"\bwish (?:i|that i) (?:was|were) dead\b|"
        r"\bbetter off dead\b|\bno reason to (?:live|go on)\b|\bnot worth living\b|"
        r"\bdon'?t want to (?:live|be alive|exist|be here anymore|wake up)\b|"
        r"\bdon'?t want to (?:go on|keep|carry on|continue) (?:living|being alive|existing)\b",
    ),
    ("self_harm", r"\bself[- ]?harm\w*|\b(?:hurt|harm|cut|cutting|hurting|harming) my ?self\b"),
    (
        "cant_go_on",
        r"\bcan'?t go on\b(?!\s+(?:to|with|until|from)\b)|\bcan(?:'?t|not) (?:take|handle|cope with) "
        r"(?:it|this|anything) any ?more\b|\bcan'?t cope\b|\bgive up on (?:life|everything)\b",
    ),
    (
        "hopeless",
        r"\b(?:feel(?:ing)?|i'?m|i am|everything (?:is|feels)|it all (?:is|feels)) (?:so |really |completely |just )?"
        r"hopeless\b(?! at)|\bhopelessness\b|\bnothing matters any ?more\b|\bwhat'?s the (?:point|use) (?:of|in) (?:anything|living|life|going on|being alive)\b",
    ),
    (
        "panic",
        # "I'm panicking about the midterm" is ordinary exam stress, answered by the interview itself;
        # a panic attack or not being able to breathe is not.
        r"\bpanic attacks?\b|\bcan'?t (?:stop crying|breathe)\b",
    ),
    (
        "crisis",
        r"\b(?:i'?m|i am) in (?:a )?crisis\b|\bhaving a (?:mental )?(?:breakdown|crisis)\b|"
        r"\bmental health crisis\b|\b(?:my life|i'?m|i am) falling apart\b|\bnobody would (?:care|notice) if i\b|"
        # a breaking point about life itself, not about the problem set; asking for someone, not okay
        r"\bbreaking point\b[^.?!]{0,40}\b(?:about|with) (?:everything|life)\b|"
        r"\bneed (?:someone|somebody) to talk to\b(?! about)[^.?!]{0,40}\bnot (?:okay|ok|alright|all right)\b(?! with)|"
        r"\bnot (?:okay|ok) at all\b[^.?!]{0,40}\bneed (?:someone|somebody) to talk to\b",
    ),
    ("abuse", r"\b(?:being|been|getting) (?:abused|assaulted|hurt by)\b|\bnot safe at home\b"),
    (
        # a means or a plan, in plain words: the most concrete warning signs there are
        "means",
        r"\b(?:looking up|looked up|googl\w+|search(?:ed|ing)? for|checking|checked) how (?:high|tall|far down|"
        r"many (?:pills|tablets))\b|"
        r"\b(?:pills?|tablets|meds|medication)\b[^.?!]{0,50}\b(?:like an answer|the answer|a way out|way out|"
        r"enough to|all (?:of them )?at once|saving (?:them )?up|stockpil\w*)|"
        r"\b(?:saving|collecting|stockpiling|hoarding) (?:up )?(?:my )?(?:pills|tablets|meds|medication)\b|"
        r"\b(?:went back to|back to|picked up|using) (?:the |my )?(?:razor|blade)s?\b|"
        r"\b(?:bought|got|have|tied) (?:a |the )?(?:rope|noose)\b|"
        # a dose worked out for oneself, a time picked when nobody is home
        r"\b(?:dose|mg/kg|how (?:much|many))\b[^.?!]{0,60}\bmy own (?:body ?weight|weight)\b|"
        r"\b(?:which|what) (?:night|day|weekend) the (?:house|flat|apartment|dorm room) (?:is|will be) empty\b",
    ),
    (
        # putting affairs in order: goodbye notes, belongings given away, "where I'm going"
        "final_arrangements",
        r"\bi(?:'?ve| have| had)? (?:already |just )?(?:wrote|written|write|left) (?:a |the |my )?(?:goodbye |"
        r"farewell |last )?(?:note|letters?)\b[^.?!]{0,60}\b(?:whoever finds|when i'?m gone|after i'?m gone|"
        r"decide when|goodbye)|"
        r"\bi(?:'?ve| have| had)? (?:already |just )?(?:wrote|written|write|left) (?:a |my )(?:goodbye|farewell) "
        r"(?:note|letter)s?\b|\bmy (?:goodbye|farewell) (?:note|letter)s?\b|"
        r"\bi(?:'?ve| have)? (?:already )?(?:wrote|written|left) (?:a )?(?:letter|note)s? (?:for|to) (?:everyone|everybody|"
        r"all of them|my whole family)\b|"
        r"\b(?:won'?t|will not|wont) (?:be )?need(?:ing)? (?:it|them|any of (?:it|them|this)|my \w+) "
        r"(?:anymore|any more|where i'?m going|after)|\bwhere i'?m going\b[^.?!]{0,30}\bwon'?t need\b|"
        r"\b(?:not|never) coming back from\b|\bafter i'?m gone\b|"
        r"\b(?:left|wrote|written|writing) instructions (?:for|to) (?:my )?\w+(?: \w+)? (?:about|for) my "
        r"(?:cats?|dogs?|pets?|plants|things|stuff|belongings|accounts|passwords)\b|"
        r"\bgave (?:away )?(?:all )?(?:of )?my (?:stuff|things|belongings|possessions|everything)(?: away)?\b|"
        r"\bgiving (?:away )?(?:all )?(?:of )?my (?:stuff|things|belongings|possessions)(?: away)?\b",
    ),
    (
        "burden",
        r"\bi(?:'?m| am| (?:really |just )?feel(?: like)?(?: i'?m)?) (?:just |only |such )?(?:a|an) "
        r"(?:burden|weight|load)(?: on| to)? "
        r"(?:everyone|everybody|my family|my parents|the world|all of you|people|nobody asked)|"
        r"\b(?:everyone|everybody|they|my family|the world|people)(?:'d| would)? (?:be )?better off without me\b|"
        r"\b(?:easier|better|simpler|happier) for (?:everyone|everybody|them|my family|my parents|all of them|the "
        r"people around me)(?: if i (?:wasn'?t|weren'?t|was not|were not|wasnt|werent) (?:here|around|alive|there)|"
        r" without me)\b",
    ),
    (
        # Spanish, Portuguese, French, Italian, German, Hindi/Urdu in Latin letters, Chinese: students
        # in distress often fall back on their first language, where the sentence encoder reads nothing
        "other_language",
        r"\b(?:me quiero morir|quiero morir(?:me)?|quisiera (?:morir|no despertar)|ganas de morir|no quiero (?:seguir )?"
        r"vivir|no quiero seguir (?:aqu[ií]|viviendo)|quitarme la vida|(?:quiero|pienso en|ganas de) matarme|suicidarme|"
        r"(?:quiero|quisiera) desaparecer|soy una carga|estar[ií]an mejor sin m[ií]|nadie me extrañar[ií]a|"
        r"no creo que siga aqu[ií]|ya no (?:voy a )?estar[ée] aqu[ií]|hacerme daño|"
        r"cortarme (?:otra vez|de nuevo|los brazos|las muñecas)|no (?:las?|los) voy a necesitar|"
        # a burden, everyone better off, not being here, goodbye letters "just in case"
        r"soy (?:un|una) (?:peso|carga|estorbo)(?! (?:de|del|en|muerto)\b)|"
        r"(?:ser[ií]a|ser[ií]a todo|estar[ií]an|estar[ií]a) (?:m[aá]s (?:f[aá]cil|feliz|felices|tranquil[oa]s?)|mejor)"
        r"(?: para [\w ]{2,30}?)? (?:si (?:yo )?(?:ya )?no (?:estoy|estuviera|estuviese|existiera|existo)"
        r"(?: aqu[ií]| ac[aá]| en este mundo)?(?=\s*(?:[.,;!?]|$))|sin m[ií])|"
        r"mejor sin m[ií]|no quiero (?:estar|seguir) en este mundo|"
        r"cartas? de despedida|(?:escrib[ií]|he escrito|dej[ée]) (?:unas |algunas |mis |las )?cartas\b[^.?!]{0,50}"
        r"\b(?:por si acaso|para cuando|para despedirme)|regal[ée] (?:todas )?mis cosas|"
        # tired of living, rather not exist or wake up, no one would notice, no will to live, wanting it all
        # to end, leaving for good, in the way of everyone, hurting oneself
        r"(?:cansad[oa]|hart[oa]) de (?:vivir|la vida|existir|estar viv[oa])|"
        r"(?:ser[ií]a mejor|prefiero|preferir[ií]a|quisiera|quiero) no (?:existir|despertar(?:me)?|haber nacido)|"
        r"dormir(?:me)? y no despertar|no despertar(?:me)? (?:nunca )?m[aá]s|"
        r"nadie (?:me )?(?:notar[ií]a|extrañar[ií]a|echar[ií]a de menos|se dar[ií]a cuenta)|"
        r"no (?:le )?(?:veo|encuentro) (?:el |ning[uú]n )?sentido a (?:seguir|vivir|la vida|mi vida|estar aqu[ií])|"
        r"(?:no tengo|sin|perd[ií](?: las)?) ganas de vivir|\bni de vivir|"
        r"quiero que (?:todo|mi vida) (?:se )?(?:termine|acabe)|acabar con mi vida|"
        r"(?:(?:quiero|quisiera|me gustar[ií]a|voy a) (?:irme|desaparecer)|me quiero ir) para siempre|no puedo m[aá]s con (?:mi|la|esta) vida|"
        r"(?:solo |s[oó]lo )?estorbo (?:en todos lados|en todas partes|a todos)|lastimarme|autolesi\w+)\b|"
        r"\b(?:quero morrer|n[ãa]o quero mais viver|(?:quero|vou) me matar|sou um peso|estariam melhor sem mim|"
        r"acabar com (?:a )?minha vida|sou um fardo|(?:seria|estariam) (?:mais f[aá]cil|melhor) (?:para [\w ]{2,30}?)?"
        r"(?:sem mim|se eu n[ãa]o (?:estivesse|existisse)(?: aqui| mais)?(?=\s*(?:[.,;!?]|$)))|"
        r"cansad[oa] de viver|dormir e n[ãa]o acordar|(?:queria|quero|prefiro) n[ãa]o "
        r"(?:existir|acordar)|ningu[ée]m (?:sentiria (?:a )?minha falta|notaria|perceberia)|sumir para sempre|"
        r"quero que tudo acabe)\b|"
        r"\b(?:je veux mourir|envie de mourir|je ne veux plus vivre|me suicider|(?:je veux|envie de) me tuer|"
        r"en finir avec (?:la vie|tout)|"
        r"je suis un fardeau|mieux sans moi|plus (?:facile|simple) (?:pour [\w ]{2,30}?)?si je n'?(?:[ée]tais|existais) "
        r"(?:plus|pas)(?: l[àa]| ici)?(?=\s*(?:[.,;!?]|$))|lettres? d'adieu|(?:fatigu[ée]e?|las(?:se)?) de vivre|"
        r"n'en peux plus de (?:vivre|la vie)|personne ne (?:remarquerait|s'en rendrait compte|me regretterait)|"
        r"(?:voudrais|veux|pr[ée]f[èe]re(?:rais)?) ne (?:plus )?(?:exister|me r[ée]veiller)|"
        r"dormir et ne (?:jamais|plus) me r[ée]veiller|dispara[iî]tre pour toujours)\b|"
        r"\b(?:voglio morire|non voglio pi[uù] vivere|farla finita(?! con)|togliermi la vita)\b|"
        r"\b(?:ich will sterben|nicht mehr leben|mich umbringen|selbstmord)\b|"
        r"\b(?:marna chaht[aie]|mar jaana chaht[aie]|jeena nahi? chaht[aie]|"
        r"jeene ka (?:mann?|dil) nahi?|zinda nahi? rehna|khudkushi|aatmahatya|(?:ek )?bojh (?:hoon|hu|hun)|"
        r"mere bina (?:sab )?(?:zyada |jyada )?khush|kabhi na uth(?:u|oon|un)|phir kabhi na uth\w*|"
        r"sab khatam kar (?:dun|du|doon)(?:ga|gi)?|sabke liye (?:ek )?(?:letter|chitthi|khat) likh)\b|"
        r"想死|不想活|自杀|活着没意思|轻生|\b(?:bu xiang huo le|zi sha)\b|"
        # no future, a burden, wanting to vanish: Chinese (characters and pinyin), Hindi (both scripts)
        r"没有未来|看不到(?:任何)?(?:未来|希望)|(?:我是|我只是|我就是)(?:大家的|所有人的|家里的|别人的)?(?:一个)?负担|"
        r"想(?:要)?消失|不想存在|活着(?:好|太|真)累|没(?:有)?人会(?:在乎|想我|发现我)|不如死了|"
        r"\b(?:wo )?(?:mei ?you|mei) ?wei ?lai\b|\bkan ?bu ?dao (?:wei ?lai|xi ?wang)\b|"
        r"\bwo (?:jiu |zhi )?shi (?:ge |yi ge )?fu ?dan\b|\bxiang xiao ?shi\b|"
        r"\bbu xiang (?:zai )?huo (?:xia ?qu|le)\b|\bhuo zhe (?:mei yi ?si|hao lei|tai lei)\b|"
        r"\b(?:mera |meri )?koi (?:future|bhavishya) nahi?\b|\bsab andhera hai\b|"
        r"\bzindagi se (?:thak|tang aa) (?:gaya|gayi|gai|chuka|chuki)\b|\bkhud ko (?:khatam|maar) (?:karna|dena|lena)\b|"
        r"\bkisi ko (?:koi )?farak nahi? padega agar main (?:na rah\w*|chala ja\w*|chali ja\w*|mar ja\w*)|"
        r"जीना नहीं चाहत|मरना चाहत|आत्महत्या|कोई भविष्य नहीं|(?:मैं )?(?:सब(?:के लिए)? )?बोझ हूँ|"
        # Korean, Japanese, Vietnamese, Tagalog, Indonesian / Malay, Turkish, Russian, Arabic
        r"죽고 싶|살고 싶지 않|사라지고 싶|없어지고 싶|\bjukgo ?sip\w*|"
        r"死にたい|消えたい|生きていたくない|生きたくない|いなくなりたい|\b(?:shinitai|kietai|ikitakunai)\b|"
        r"không muốn sống nữa|muốn chết|muốn biến mất|\b(?:khong muon song nua|muon chet)\b|"
        r"\b(?:ayoko nang mabuhay|gusto ko nang (?:mamatay|mawala)|magpakamatay)\b|"
        r"\b(?:ingin mati|pengen mati|(?:capek|lelah) hidup|(?:tidak|gak|nggak|ga) (?:ingin|mau) hidup lagi|"
        r"bunuh diri|pengen menghilang)\b|"
        r"\b(?:yaşamak istemiyorum|ölmek istiyorum|kendimi öldürmek)\b|"
        r"не хочу (?:больше )?жить|хочу умереть|покончить с собой|\b(?:ne khochu (?:bolshe )?zhit|khochu umeret)\b|"
        r"بدي موت|ما بدي عيش|(?:أريد|اريد) (?:أن|ان) (?:أموت|اموت)",
    ),
)
# Said as hyperbole far more often than not ("if I fail this quiz I'm going to die lol"), but not to be let
# pass: the student is asked how they are (a check-in), and the answer decides.
_CHECK_IN_SIGNS: tuple[tuple[str, str], ...] = (
    ("going_to_die", r"\b(?:going|gonna) (?:to )?die\b"),
    # "I can't take any more", "I feel empty", "nothing makes sense", goodbyes to everyone: in Spanish and
    # French; "ya no puedo más con este curso" is about the course and passes
    (
        "other_language",
        r"\b(?:ya no puedo m[aá]s|no aguanto m[aá]s)\b(?! con (?:este|esta|el|la|los|las) (?!vida))|"
        r"\bme siento (?:tan |muy )?vac[ií][oa]\b|\bnada tiene sentido\b|"
        r"\bya me desped[ií] de (?:todos|todo el mundo|mi familia)\b|\bje n'en peux plus\b(?! de ce)|"
        # a goodbye that sounds final: Hindi in Latin letters, Chinese
        r"\b(?:shayad|ab) (?:kabhi|phir kabhi) (?:baat|mulaqat|mil\w*) na\b|\baakhri baar\b[^.?!]{0,40}\b(?:baat|bye|alvida)\b|"
        r"\balvida\b[^.?!]{0,60}\b(?:kabhi|aakhri|hamesha)\b|永别|\byong ?yuan zai ?jian\b",
    ),
)
# "suicide" or "self-harm" named as the subject of coursework (an essay on Hamlet's soliloquy, a nursing
# case, a risk-assessment module) with no first-person wish or plan: the student is asked how they are
# (a check-in) rather than the chat being stopped; the answer escalates on any further sign.
_AS_SUBJECT = re.compile(
    r"\b(?:essay|paper|soliloquy|novel|poem|play|character|chapter|article|author|patient|client|case|"
    r"assessment|assessing|screen(?:ing)?|risk|module|lecture|unit|theory|rates?|data|study|studies|research|"
    r"policy|prevention|literature|reading|ideation|scale|protocol|care plan|history of|diagnos\w*|"
    r"\d+[- ]year[- ]old|year[- ]old|mg|newly on|nursing|clinical|ward|psych\w*)\b",
    re.I,
)
_FIRST_PERSON_WISH = re.compile(
    r"\b(?:i|i'?m|i'?ve|i'?d|i am|me|myself|my own)\b[^.?!]{0,25}\b(?:want|wanna|wish|thinking|thought|"
    r"planning|plan to|feel|felt|tried|attempt\w*|urges?|can'?t stop)\b",
    re.I,
)
_SUBJECT_TERMS = re.compile(r"^(?:suicid\w*|self[- ]?harm\w*|hopelessness)$", re.I)
_INJECTION: tuple[tuple[str, str], ...] = (
    (
        "override",
        r"\b(?:ignore|disregard|forget|override) (?:all |any |the |your |my )*(?:previous|prior|above|earlier|"
        r"preceding|system|original)? ?(?:instructions?|prompts?|rules|messages|guidelines|directions)\b",
    ),
    (
        "extraction",
        r"\b(?:system|initial|hidden|original) (?:prompt|message|instructions?)\b|"
        r"\b(?:show|reveal|print|repeat|tell|give|output|display|what (?:is|are|were)) (?:me )?(?:your|the) "
        r"(?:prompt|instructions?|rules|guidelines|configuration)\b|\bwhat were you told\b|"
        r"\brepeat (?:the|everything|all) (?:text|words)? ?above\b",
    ),
    (
        "persona",
        # addressed to the assistant: "we have to pretend to be a character", "I enabled developer mode on
        # my phone" and "a report on a jailbreak" are coursework
        r"\byou are now\b|\bfrom now on,? you (?:are|will)\b|\bpretend you(?:'re| are)\b|"
        r"(?:^|[.!?]\s*|\b(?:you|u|can you|could you|please|now)\s+)pretend to be\b|"
        r"\bDAN\b|\bjailbr(?:eak|oken) (?:mode|prompt)\b|\bjailbroken\b|\bdo anything now\b|"
        r"(?:^|[.!?]\s*|\b(?:you|u|please|now)\s+)(?:enter|switch (?:to|into)|activate|enable|go into) "
        r"(?:developer|god|admin|debug|jailbreak|unrestricted) mode\b|"
        r"\byou(?:'re| are) (?:now )?in (?:developer|god|admin|debug|unrestricted) mode\b",
    ),
    (
        "other_students",
        r"\b(?:other|another|previous|all the|every) (?:students?|person|people|users?)(?:'s|s')? ?"
        r"(?:summar\w*|data|transcripts?|notes|emails?|answers|chats?|bookings?|messages|information|info|intakes?)\b|"
        r"\b(?:summar\w*|transcripts?|chats?|intakes?|data) (?:of|from|for) (?:other|another|all) (?:students?|people|users?)\b|"
        # what someone else told the assistant: "what did she say she was stuck on?", "what did the student
        # before me ask about?"
        r"\bwhat (?:did|was|were|has|have) (?:the (?:student|person|people|one|guy|girl)s? (?:before|after) me|"
        r"(?:my )?(?:friend|classmate|roommate|partner|lab partner)(?: \w+)?|she|he|they|someone else)\b"
        r"[^.?!]{0,40}\b(?:stuck on|ask(?:ed)? (?:you )?about|tell you|told you|say to you|said to you|"
        r"talk(?:ed)? to you about|working on|write to you)",
    ),
    ("markup", r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|###\s*(?:instruction|system)|\[/?INST\]"),
)
_HOMEWORK: tuple[tuple[str, str], ...] = (
    (
        "give_answer",
        r"\b(?:give|tell|send|show) me (?:the |all the |your )?(?:answers?|solutions?|correct (?:answer|version)|"
        r"final answer|code)\b|\bwhat(?:'s| is) the (?:answer|solution)\b",
    ),
    (
        "do_it_for_me",
        r"\b(?:can|could|will|would) you (?:please |just |pls )*(?:write|do|solve|finish|complete|fix|correct|"
        r"rewrite|redo|edit|proofread|answer|code)\b|"
        r"\b(?:write|solve|do|finish|complete|fix|correct|rewrite|redo|code)\b[^.?!]{0,40}\bfor me\b",
    ),
    (
        "imperative",
        r"(?:^|[.!?]\s+)(?:please |pls |just )*(?:write|solve|do|finish|complete|rewrite|fix|correct) "
        r"(?:my|this|it|the|problem|question|number|exercise|#)\b",
    ),
    (
        "write_my",
        r"(?:\bwrite me|(?:^|[.!?]\s+)(?:please |pls |just )*write) (?:a|an|my|the) "
        r"(?:essay|paper|thesis|paragraph|introduction|conclusion|program|function|report)\b",
    ),
)
# Asking for a human instead of the assistant (not "I want to talk to my professor about the essay": that
# is what the meeting is for). The chat goes on; the course's staff are told at once.
_PERSON: tuple[tuple[str, str], ...] = (
    (
        "talk_to_person",
        r"\b(?:talk|speak|chat|write)(?:ing)? (?:to|with) (?:a |an |some )?(?:real |actual |live )?"
        r"(?:human(?: being)?|person|someone real|somebody real)\b|"
        r"\b(?:want|need|get|give|connect|put)(?: me)? (?:through )?(?:to |with )?(?:a |an )?(?:real |actual |live )"
        r"(?:human|person)\b|\b(?:can|could|may) i (?:get|have) (?:a |an )?(?:human|real person)\b|"
        r"\b(?:i'?d|i would) rather (?:talk|speak) (?:to|with) (?:a |an )?(?:human|person|real person)\b|"
        r"\bnot (?:to |with )?(?:a |the )?(?:bot|robot|ai|chatbot)\b.{0,30}\b(?:human|person)\b|"
        r"\b(?:is|are) (?:there|any) (?:a |an )?(?:human|real person|actual person)\b|"
        r"\bget me (?:a |an )?(?:human|person|real person)\b",
    ),
)
# Moving or cancelling the booking itself: answered with the booking's own Cal.com links, the chat goes on.
_RESCHEDULE: tuple[tuple[str, str], ...] = (
    (
        "move_meeting",
        r"\breschedul\w*|"
        r"\b(?:move|change|push(?: back)?|postpone|cancel(?:l?ing)?|shift) (?:the |my |this |our )?"
        r"(?:meeting|appointment|booking|office hours?|time ?slot)\b|"
        r"\bcan'?t make (?:it|the meeting|the appointment|my appointment)\b",
    ),
)
_OFF_TOPIC: tuple[tuple[str, str], ...] = (
    (
        "chitchat",
        r"\b(?:weather|tell me a joke|joke|favou?rite (?:movie|food|colou?r|song|team|band|game)|who won|"
        r"sports?|football|soccer|basketball|recipe|bitcoin|crypto|netflix|tiktok|video games?|girlfriend|"
        r"boyfriend|dating|horoscope|lottery|let'?s talk about something else|i'?m bored|play a game)\b",
    ),
    (
        "about_bot",
        r"\bare you (?:a |an )?(?:bot|robot|human|real|ai|person|chatgpt)\b|\bwho (?:made|built|created) you\b",
    ),
)
_COMPILED_CHECK_IN = [(rule, re.compile(pattern, re.I)) for rule, pattern in _CHECK_IN_SIGNS]
_COMPILED = {
    name: [(rule, re.compile(pattern, re.I)) for rule, pattern in rules]
    for name, rules in (
        ("distress", _DISTRESS),
        ("injection", _INJECTION),
        ("homework", _HOMEWORK),
        ("person", _PERSON),
        ("reschedule", _RESCHEDULE),
        ("off_topic", _OFF_TOPIC),
    )
}
_CASE_SENSITIVE_DAN = re.compile(r"\bDAN\b")
# "i g n o r e", "D.i.s.r.e.g.a.r.d", "g-u-i-d-e-l-i-n-e-s": letters spelled out one by one
_SPELLED = re.compile(r"(?<![\w.-])(?:[A-Za-z][ .\-]){2,}[A-Za-z](?![\w-])")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")


def plain_forms(text: str) -> list[str]:
    """The text, and what it says once spelled-out letters are joined and base64 runs decoded: the rules
    read meaning in words, and an instruction hidden in either form is still an instruction."""
    forms = [text]
    joined = _SPELLED.sub(lambda m: re.sub(r"[ .\-]", "", m.group(0)), text)
    joined = re.sub(r"\s{2,}", " ", joined)
    if joined != text:
        forms.append(joined)
    for blob in _BASE64.findall(text):
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        if decoded.isprintable() and len(decoded.split()) >= 2:
            forms.append(decoded)
    return forms


def screen(text: str, *, course_related: bool = False) -> Verdict:
    """Classify a student message; distress wins over everything, then injection, homework, asking for
    a person, moving or cancelling the meeting, off-topic.

    ``course_related`` (the policy saw a topic or assignment in the message) keeps course talk that
    happens to mention, say, football in a statistics problem from being called off-topic.
    """
    demoted: Verdict | None = None
    for kind in ("distress", "injection", "homework", "person", "reschedule", "off_topic"):
        if kind == "off_topic" and course_related:
            continue
        # an instruction spelled out or encoded is still one: the plain forms are worked out once
        forms = plain_forms(text) if kind == "injection" else [text]
        for rule, pattern in _COMPILED[kind]:
            match = next((m for form in forms if (m := pattern.search(form))), None)
            if (
                match
                and rule == "persona"
                and match.group(0).lower() == "dan"
                and not _CASE_SENSITIVE_DAN.search(text)
            ):
                continue  # "dan" is also a name; only the upper-case jailbreak counts
            if match and kind == "distress" and all(_as_subject(text, m) for m in pattern.finditer(text)):
                demoted = demoted or Verdict("check_in", f"{rule}_as_subject")
                continue
            if match:
                return Verdict(kind, rule)  # type: ignore[arg-type]
        if kind == "distress":
            sign = next((rule for rule, pattern in _COMPILED_CHECK_IN if pattern.search(text)), None)
            if checked := demoted or (Verdict("check_in", sign) if sign else None):
                return checked
    return Verdict("ok")


def _as_subject(text: str, match: re.Match[str]) -> bool:
    """The distress word is the topic of coursework, not the student's wish (see ``_AS_SUBJECT``)."""
    if not _SUBJECT_TERMS.match(match.group(0).strip()):
        return False  # "kill myself", "end my life": first person by their nature
    sentence = next((s for s in sentences(text) if match.group(0) in s), text)
    return bool(_AS_SUBJECT.search(sentence)) and not _FIRST_PERSON_WISH.search(sentence)


# ---------------------------------------------------------------- template replies


def support_reply(course: Course) -> str:
    """The humane stop: the course's own support message and resources, no further questions."""
    lines = [course.support.message.strip(), ""]
    lines += [f"- {r.name}: {r.contact}" for r in course.support.resources]
    lines += ["", f"I have let {course.instructor_name} know, and they will see this before your meeting."]
    return "\n".join(lines)


_GUARD_WORDING: dict[str, tuple[str, ...]] = {
    # a second and third phrasing, so a student who tries twice never reads the same sentence again
    "homework": (
        "I can't do the work for you, but I can help {instructor} help you in the meeting.",
        "Working it out is what the meeting with {instructor} is for; I'm just collecting what they need.",
        "I won't give answers here, but your notes will help {instructor} get straight to it.",
    ),
    "injection": (
        "I can't share that. I'm only here to help you get ready for your meeting with {instructor}.",
        "That's not something I can do; let's stick to getting you ready for {instructor}.",
        "I'll skip that part and keep to your meeting with {instructor}.",
    ),
    "off_topic": (
        "Let's keep this about your {code} meeting so it's worth your time.",
        "Back to your {code} meeting for now.",
        "Let's save that for later and finish getting you ready for {code}.",
    ),
    "reschedule": (
        "To move or cancel the meeting, use the reschedule or cancel link in your booking confirmation email; "
        "{instructor} will see the change.",
        "The booking confirmation email has the link to move or cancel the meeting.",
        "Changes to the booking go through the link in your confirmation email.",
    ),
    "person": (
        "I have flagged this for {instructor} and the course staff: they will see that you would like to talk "
        "with a person, and one of them may answer you right here. Until then, let's keep going.",
        "The course staff already know you would like a person; they will see it before your meeting.",
        "Your request for a person is with the course staff.",
    ),
}
_BOOKING_LINKS = (
    "You can move the meeting here: {reschedule}\nor cancel it here: {cancel}\n{instructor} will see the change. "
    "Meanwhile, let's keep going.",
    "Here are the links again. Move the meeting: {reschedule}\nCancel it: {cancel}",
    "Move: {reschedule}\nCancel: {cancel}",
)


def booking_links(web_url: str, booking_uid: str) -> tuple[str, str]:
    """The booking's own Cal.com pages: (reschedule, cancel)."""
    base, uid = web_url.rstrip("/"), quote(booking_uid, safe="")
    return f"{base}/reschedule/{uid}", f"{base}/booking/{uid}?cancel=true"


def guard_reply(
    kind: Kind, course: Course, next_question: str, times: int = 0, links: tuple[str, str] | None = None
) -> str:
    """The template answer to a guarded message, carrying the interview's next question.

    ``times``: how often this kind was answered already in the chat (each time a new phrasing).
    ``links``: the booking's (reschedule, cancel) pages, given to a student who asks to move or cancel.
    """
    wording = _GUARD_WORDING.get(kind, _GUARD_WORDING["off_topic"])
    if kind == "reschedule" and links:
        wording = _BOOKING_LINKS
    lead = wording[min(times, len(wording) - 1)].format(
        instructor=course.instructor_name,
        code=course.code,
        reschedule=links[0] if links else "",
        cancel=links[1] if links else "",
    )
    return f"{lead}\n\n{next_question}" if kind == "reschedule" and links else f"{lead} {next_question}"


# ---------------------------------------------------------------- checking model output

_SOLUTION = re.compile(
    r"```|`|\bthe (?:correct |right |final )?answer (?:is|would be)\b|\bhere(?:'s| is) (?:the|a|your) (?:corrected|revised|"
    r"rewritten|improved|fixed|better|new|sample|example) |\bcorrected (?:version|sentence|text)\b|\bsolution\b|"
    r"\bshould (?:be|read|say)\s*:|\byou should write\b|\btry this\s*:|\bstep 1\b|\bdef \w+\(|\bimport \w+|"
    r"\bprint\(|\bthe thesis (?:could|should) be\b|=\s*-?\d",
    re.I,
)
_LEAK = re.compile(
    r"\bsystem prompt\b|\bmy (?:instructions|prompt|rules)\b|\bi (?:was|am) (?:told|instructed|programmed)\b|"
    r"\bas an ai\b|\blanguage model\b|\bother students?\b|\banother student\b|\[|\]|\bone short question\b|"
    r"\bdo not solve\b|"
    # the turn's instruction speaks of the student ("Ask which part ... is hardest for them"), and the small
    # model sometimes keeps its words: "Which part of Lab 5 is hardest for them?", "... in what they described"
    r"\b(?:is|are|seems?) (?:the )?(?:hardest|most (?:difficult|confusing)|trickiest) for them\b|"
    r"\b(?:in|of|on|about) what they (?:described|said|wrote|mentioned|shared)\b",
    re.I,
)
_ROLE = re.compile(r"<\||\|>|\b(?:assistant|user|student|system)\s*:|^\s*(?:ai|bot)\s*:", re.I)
MAX_REPLY_CHARS = 240
MAX_PREFACE_CHARS = 160


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _garbled(text: str, *, unfinished: bool = False) -> bool:
    """Junk, a stutter or a word said twice in a row. ``unfinished``: the start of a streaming reply,
    where a first word such as "I" or "A" is no junk yet (a word of two letters may still follow)."""
    if not re.search(r"[A-Za-z]{2,}", text) and not (unfinished and len(text.split()) < 3):
        return True
    plain = sum(ch.isalnum() or ch.isspace() or ch in ".,;:!?'\"()-–—/&%" for ch in text)
    if plain / max(1, len(text)) < 0.9:
        return True
    words = text.lower().split()
    if any(len(w) > 30 for w in words):
        return True
    if any(words[i] == words[i + 1] and len(words[i].strip(".,;:!?")) > 2 for i in range(len(words) - 1)):
        return True  # "about about": the small model stuttering
    if any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2)):
        return True
    bare = [
        w.strip(".,;:!?\"'()") for w in words
    ]  # "debug Lab 6: Debugging Practice: Lab 6: Debugging Practice?"
    return any(
        bare[i : i + n] == bare[i + n : i + 2 * n] for n in range(2, 7) for i in range(len(bare) - 2 * n + 1)
    )


def says_twice(text: str, names: Collection[str] = ()) -> bool:
    """A pair of content words said twice in one sentence of a model reply: the small model going round
    in circles ("Which notes or examples on the course notes on 'Significant figure rules' in the course
    notes?", "... syllabus-related topics on the syllabus-related topics ..."). Pairs of the course's own
    name words may come twice (a question naming two assignments)."""
    for sentence in sentences(text):
        pairs = [
            pair
            for pair in pairwise(_words(sentence))
            if not any(w in STOPWORDS for w in pair) and not all(w in names for w in pair)
        ]
        if len(set(pairs)) < len(pairs):
            return True
    return False


def repeats(text: str, previous: Sequence[str]) -> bool:
    """Whether any finished sentence of ``text`` says again a sentence the bot already said."""
    said = [s for p in previous for s in sentences(p)]
    return any(
        similar(s, p)
        for s in sentences(text)
        if re.search(r"[.!?]$", s) and len(s.split()) >= 3
        for p in said
    )


def check_partial(
    text: str, *, system_prompt: str, previous: Sequence[str] = (), names: Collection[str] = ()
) -> list[str]:
    """Problems visible in an unfinished reply: enough to stop streaming it early. ``names``: the course's
    own name words (see ``_without_names``)."""
    problems = []
    if previous and repeats(text, previous):
        problems.append("repeat")
    if _SOLUTION.search(text):
        problems.append("solution")
    shared = _ngrams(text, LEAK_RUN_WORDS) & _ngrams(system_prompt, LEAK_RUN_WORDS)
    if _LEAK.search(text) or _without_names(shared, names, LEAK_RUN_WORDS):
        problems.append("leak")
    if _ROLE.search(text):
        problems.append("role_marker")
    if text.strip() and _garbled(text):
        problems.append("garbled")
    if len(text) > MAX_REPLY_CHARS:
        problems.append("too_long")
    return problems


_SLOT_WORDS = {
    "issue": r"help|work|about|need|what|bring",
    "assignment": r"assignment|essay|which|set|project|lab|homework|paper|for|course",
    "stuck_on": r"part|stuck|hard|difficult|trouble|confus|which|where|what|specific|exactly|problem",
    "topic": r"topic|which|part|area|relate|about|closest",
    "attempts": r"tried|try|done|attempt|so far|already|worked",
    "goal": r"meeting|goal|want|hope|leave|like|help|need|success|get",
    "deadline": r"due|deadline|when|date|submit",
    "example": r"example|paste|share|show|sentence|step|piece|part",
    "anything_else": r"else|anything|add|know|other",
}


def check_reply(
    reply: str,
    *,
    system_prompt: str,
    previous: Sequence[str],
    slot: str | None = None,
    course: Course | None = None,
    assignment: str | None = None,
) -> list[str]:
    """Every problem with a finished model reply; an empty list means it may be shown.

    With ``course``, a reply about one assignment other than ``assignment`` (the one the policy has
    identified, None if none yet) is ``wrong_assignment``: a small model that learned to name the
    course's titles sometimes names the wrong one. A list of several assignments to choose from is fine.
    """
    names = _name_words(course) if course is not None else set()
    problems = check_partial(reply, system_prompt=system_prompt, previous=previous, names=names)
    if "garbled" not in problems and says_twice(reply, names):
        problems.append("garbled")
    if course is not None and not (slot == "assignment" and assignment is None):  # a candidate may be named
        named = assignments_named(reply, course)
        if len(named) == 1 and named != {assignment}:
            problems.append("wrong_assignment")
    if not reply.strip():
        problems.append("empty")
    if reply.count("?") != 1 or not reply.rstrip().endswith("?"):
        problems.append("not_one_question")
    q = question_text(reply)
    if q and len(q.split()) < 3:
        problems.append("too_short")
    if slot in _SLOT_WORDS and q and not re.search(rf"\b(?:{_SLOT_WORDS[slot]})", q, re.I):
        problems.append("off_slot")
    return problems


# ---------------------------------------------------------------- releasing a reply while it streams

# Word runs this long shared with the system prompt are a leak; with an earlier bot message, a repeat.
LEAK_RUN_WORDS = 7
REPEAT_RUN_WORDS = 5
# The same patterns as above, with the ``regex`` module (it ships with transformers, which is pinned):
# its partial matching says whether the end of a text could still become a match once more words come.
# words said of the course materials: the small model's "In the course notes, it says: ..." is followed by
# words the notes do not have (seen in make eval), and a question needs no citation
_CITES = re.compile(
    r"\bit (?:says|states|reads)\b|\baccording to\b|"
    r"\b(?:notes?|handouts?|slides?|textbook|materials?|readings?|sheet|syllabus) (?:says?|said|states?|explains?|"
    r"mentions?|tells? (?:you|us))\b",
    re.I,
)
_PARTIAL = [_regex.compile(p.pattern, _regex.I) for p in (_SOLUTION, _LEAK, _ROLE, _CITES)]
_WORD = re.compile(r"[A-Za-z0-9']+")
_SENTENCE_START = re.compile(r"(?:^|[.!?…][\"')\]]*\s+)(?=\S)")


class Release(msgspec.Struct, frozen=True):
    """How much of a streaming reply may be shown now (``safe`` characters), or why it must stop."""

    safe: int
    problems: list[str]


class PrefixGuard:
    """The checks that decide on a prefix, so a reply can be shown word by word and never taken back.

    ``check(text)`` runs the hard checks of ``check_partial`` (solution, leak, role markers, garbled,
    length) on everything received, plus a leak run of 7 words shared with the system prompt, a repeat
    run of 5 words shared with an earlier bot message or with the reply itself, a finished sentence (of
    two words or more: prefaces too) said before in either (held while it is so far the start of one),
    and a single assignment named that is not the one identified. It releases text only up to the
    earliest point where one of these could still be completed by words not yet received: the word in
    progress, a pattern's partial match, a run shorter than its limit, the unfinished start of an
    assignment's name, and a question sentence (it starts with a question word) until it has three words
    and one of the slot's words; with ``questions`` (the policy's own question for the turn, which the
    model was shown as its example, and any other question of ours it was steered by), a sentence that
    copied the first five words or more of one is held from where it turns away from it. Checks that
    need the whole reply (one question, its slot, a paraphrased repeat) are ``check_reply``'s, at the
    question mark.
    """

    def __init__(
        self,
        *,
        system_prompt: str,
        previous: Sequence[str] = (),
        slot: str | None = None,
        course: Course | None = None,
        assignment: str | None = None,
        given: str = "",
        questions: Sequence[str] = (),
    ) -> None:
        self.system_prompt = system_prompt
        self._questions = [[t.lower() for t in _TOKEN.findall(q)] for q in questions]
        names = _name_words(course) if course is not None else set()
        # words the reply may use that no dictionary has: whatever the model was given (the student's
        # words, course snippets, names), the earlier replies and the course's own names
        self._known = {
            *_words(system_prompt),
            *_words(given),
            *(w for p in previous for w in _words(p)),
            *names,
        }
        self.previous = list(previous)
        self.slot_words = re.compile(rf"\b(?:{_SLOT_WORDS[slot]})", re.I) if slot in _SLOT_WORDS else None
        self.course = course
        self.assignment = assignment
        self.guessing = slot == "assignment" and assignment is None  # "is this for Lab 6?" may name one
        self._leak_runs = _without_names(_runs(_words(system_prompt), LEAK_RUN_WORDS), names, LEAK_RUN_WORDS)
        self._repeat_runs = _without_names(
            _runs([w for p in previous for w in _words(p)], REPEAT_RUN_WORDS), names, REPEAT_RUN_WORDS
        )
        self._said = [_words(s) for p in previous for s in sentences(p)]
        self._names = _assignment_names(course) if course is not None else []
        self._course_words = names

    def check(self, text: str) -> Release:
        problems = self._problems(text)
        if problems:
            return Release(0, problems)
        return Release(self._safe(text), [])

    def repair(self, text: str, shown: int) -> str | None:
        """``text`` with each wrong assignment's name (never shown: names are held until complete) put as
        the identified assignment, or "your assignment"; None if that does not leave it problem-free.

        A small model often names an assignment of the course that is not the student's; the words
        around the name are fine, and they may already be on screen.
        """
        if self.course is None:
            return None
        right = next((a for a in self.course.assignments if a.id == self.assignment), None)
        instead = right.title.split(":")[0].strip() if right else "your assignment"
        for a in self.course.assignments:
            if a.id == self.assignment:
                continue
            for name in sorted({a.title, a.title.split(":")[0].strip()}, key=len, reverse=True):
                pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", re.I)
                if any(m.start() < shown for m in pattern.finditer(text)):
                    return None
                text = pattern.sub(instead, text)
        return text if not self._problems(text) else None

    def _problems(self, text: str) -> list[str]:
        problems = []
        if _SOLUTION.search(text):
            problems.append("solution")
        words = _words(text)
        if _LEAK.search(text) or _longest_run(words, self._leak_runs, LEAK_RUN_WORDS) >= LEAK_RUN_WORDS:
            problems.append("leak")
        if _longest_run(words, self._repeat_runs, REPEAT_RUN_WORDS) >= REPEAT_RUN_WORDS or self._repeats(
            text
        ):
            problems.append("repeat")
        if _ROLE.search(text):
            problems.append("role_marker")
        if text.strip() and (
            _garbled(text, unfinished=True)
            or _mostly_unknown(words, self._known)
            or says_twice(text, self._course_words)
        ):
            problems.append("garbled")
        if _lecture(text):
            problems.append("lecture")
        if len(text) > MAX_REPLY_CHARS:
            problems.append("too_long")
        if self.course is not None and not self.guessing:
            named = assignments_named(text, self.course)
            if len(named) == 1 and named != {self.assignment}:
                problems.append("wrong_assignment")
        return problems

    def _repeats(self, text: str) -> bool:
        """A finished sentence said before, by an earlier message or earlier in this reply (a preface such
        as "What a great question!" counts as much as a question), or a run of words the reply repeats."""
        finished = sentences(text[: _sentence_start(text)])
        done = [_words(s) for s in finished]
        for i, sentence in enumerate(done):
            if len(sentence) >= 2 and (sentence in self._said or sentence in done[:i]):
                return True
        if repeats(" ".join(finished), self.previous) or any(
            repeats(s, finished[:i]) for i, s in enumerate(finished) if i
        ):
            return True
        words = _words(text)
        grams = [tuple(words[i : i + REPEAT_RUN_WORDS]) for i in range(len(words) - REPEAT_RUN_WORDS + 1)]
        return len(set(grams)) < len(grams)

    def _safe(self, text: str) -> int:
        """The end of what may be shown: before every place where a check could still fire."""
        spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        holds = [len(text) if text[-1:].isspace() else (spans[-1][0] if spans else 0)]  # the word in progress
        if len(spans) - (not text[-1:].isspace()) < 2:
            holds.append(0)  # one word cannot be judged alone: a stutter or junk shows with the next one
        for pattern in _PARTIAL:
            match = pattern.search(text, partial=True)
            if match is not None and match.partial:
                holds.append(match.start())
        words = [text[a:b].lower() for a, b in spans]
        for runs, limit in ((self._leak_runs, LEAK_RUN_WORDS), (self._repeat_runs, REPEAT_RUN_WORDS)):
            if k := _suffix_run(words, runs, limit):
                holds.append(spans[-k][0])
        start = _sentence_start(text)
        sentence = [w for (a, _), w in zip(spans, words, strict=True) if a >= start]
        own = [_words(x) for x in sentences(text[:start])]
        if sentence and any(said[: len(sentence)] == sentence for said in self._said + own):
            holds.append(start)  # so far word for word an earlier sentence (of a message or this reply)
        if k := _suffix_run(
            words, _runs(words[: -REPEAT_RUN_WORDS + 1] or [], REPEAT_RUN_WORDS), REPEAT_RUN_WORDS
        ):
            holds.append(spans[-k][0])  # could still grow into a run this reply already has
        if k := _name_prefix(words, self._names):
            holds.append(spans[-k][0])
        current = text[start:].lstrip()
        if current and (
            _STATEMENT_AS_QUESTION.match(current)
            or not (_INTERROGATIVE.match(current) or (not start and _ACKNOWLEDGES.match(current)))
        ):
            # a statement shows once it ends and is judged ("Lab 5 is a real-world example of ..."), and so
            # does "What makes the quiz hard for students is ..."; an acknowledgement opening the reply streams
            holds.append(start)
        if _INTERROGATIVE.match(text[start:]) and (
            len(sentence) < 3 or (self.slot_words is not None and not self.slot_words.search(text[start:]))
        ):
            holds.append(start)
        if (departs := self._departure(text, start)) is not None:
            holds.append(departs)
        return max(0, min(holds))

    def _departure(self, text: str, start: int) -> int | None:
        """Where the sentence in progress, having copied one of our questions word for word, turns away
        from it: the words from there wait until the sentence ends and is judged. Should it then fail, what
        is on screen is the question's own start and the question's rest completes it (no "… " and the
        question asked anew after a broken-off one)."""
        tokens = list(_TOKEN.finditer(text, start))
        if tokens and not text[-1:].isspace() and tokens[-1].end() == len(text):
            tokens.pop()  # the word in progress
        said = [t.group().lower() for t in tokens]
        same = max((_common_start(said, asked) for asked in self._questions), default=0)
        if same < TRACKED_WORDS:
            return None
        # the space after the copied words waits too, so "... Tests" + "?" can still end the copy
        return tokens[same - 1].end()


_INTERROGATIVE = re.compile(
    r"(?:what|which|how|when|where|why|who|could|can|would|will|do|does|did|is|are|have|has|should)\b", re.I
)


# A sentence that opens like a question but is often the small model's explanation: "What makes functions
# tricky for Python beginners is that they all have different ..." (make eval, three times in one run)
_STATEMENT_AS_QUESTION = re.compile(
    r"what makes\b|what(?:'s| is) (?:so )?(?:tricky|hard|difficult|challenging)\b", re.I
)
PREFACE_SENTENCES, PREFACE_WORDS = 2, 12  # statements before the question; more is a lecture
# How an acknowledgement or a request opens ("Thanks.", "Got it.", "That makes sense.", "Tell me ..."): it
# streams at once; any other first statement is held until it ends and judged whole
_ACKNOWLEDGES = re.compile(
    r"(?:thanks?|thank you|got it|i see|i understand|i hear|i can see|i'?m (?:glad|sorry)|sorry|understood|"
    r"ok(?:ay)?|sure|great|good|nice|perfect|alright|all right|right|fair|no (?:problem|worries)|sounds|"
    r"makes sense|that(?:'s| is| makes| sounds| helps| must| can| seems)|tell me|describe|walk me|let'?s|"
    r"let me|please)\b",
    re.I,
)


def _lecture(text: str) -> bool:
    """More finished statements (sentences that ask nothing) than an acknowledgement needs: "Thanks.
    That helps." is two sentences and three words; the small model explaining the concept in the course's
    words, true or not, is more (make eval: "That makes sense. In the course notes, Utilitarianism and
    consequentialism are often discussed in terms of justice and morality.", 19 words). So is any
    statement that quotes, and any words citing the materials ("In the course notes, it says: ..."). A
    first statement that is no acknowledgement, and every statement after the first, is held until it
    ends, and a citation from its first words, so none of these ever shows."""
    said = [s for s in sentences(text[: _sentence_start(text)]) if "?" not in s]
    if any(_QUOTATION.search(s) for s in said) or _CITES.search(text):
        return True  # a statement that quotes or cites: the materials said back in words the model made up
    return len(said) > PREFACE_SENTENCES or sum(len(s.split()) for s in said) > PREFACE_WORDS


_QUOTATION = re.compile(r"[\"“”]")


UNKNOWN_SHARE = 0.5  # more of a reply's words than this neither English nor given to the model: junk


def _mostly_unknown(words: Sequence[str], known: set[str]) -> bool:
    """Whether most words of three letters or more are in no dictionary and were not given to the model
    ("zxqv blorp"): the small model's junk, not a course term (those are in what it was given)."""
    plain = [w for w in words if len(w) >= 3 and w.isalpha()]
    unknown = sum(w not in known and not _english_word(w) for w in plain)
    return unknown >= 2 and unknown > len(plain) * UNKNOWN_SHARE


def mostly_foreign(text: str, known: Collection[str] = ()) -> bool:
    """Whether a sentence is mostly in another language: at least two of its words of four letters or more,
    and at least 40% of them, are neither English nor ``known`` (the course's own words). "Entender bien
    los boundaries para poder arreglarlo yo misma" is; "I reread the Kant notes and the handout" is not."""
    plain = [w for w in _words(text) if len(w) >= 4 and w.isalpha()]
    unknown = sum(w not in known and not _english_word(w) for w in plain)
    return unknown >= 2 and unknown >= 0.4 * len(plain)


def _english_word(word: str) -> bool:
    english = english_words()
    return any(form in english for form in (word, *(word[: -len(x)] for x in _ENDINGS if word.endswith(x))))


_ENDINGS = ("s", "es", "ed", "d", "ing", "ly", "er", "est")


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """The whole words of the shipped encoder's WordPiece vocabulary: about 21,700 common English words.
    Built once per process (the gateway does it at start-up, with the course maps)."""
    from services.indexer.embedding import load_minilm

    vocabulary = load_minilm().tokenizer.get_vocab()
    return frozenset(w for w in vocabulary if w.isascii() and w.isalpha())


TRACKED_WORDS = 5  # words (and marks) of our question a reply must copy before turning away from it is held
_TOKEN = re.compile(r"[\w'’-]+|[^\w\s]")


def _common_start(a: Sequence[str], b: Sequence[str]) -> int:
    """How many items two sequences share from their start (``os.path.commonprefix`` is for paths)."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _runs(words: Sequence[str], limit: int) -> set[tuple[str, ...]]:
    """Every run of 1..limit words of a text (the n-grams a reply may not share in full)."""
    return {tuple(words[i : i + n]) for n in range(1, limit + 1) for i in range(len(words) - n + 1)}


def _longest_run(words: Sequence[str], runs: set[tuple[str, ...]], limit: int) -> int:
    """The longest run of ``words`` (up to ``limit``) that the reference also has, anywhere."""
    best = 0
    for i in range(len(words)):
        n = best + 1
        while n <= limit and i + n <= len(words) and tuple(words[i : i + n]) in runs:
            best = n
            n += 1
    return best


def _suffix_run(words: Sequence[str], runs: set[tuple[str, ...]], limit: int) -> int:
    """How many of the last words could still grow into a shared run of ``limit`` words."""
    for k in range(min(limit - 1, len(words)), 0, -1):
        if tuple(words[-k:]) in runs:
            return k
    return 0


def _sentence_start(text: str) -> int:
    starts = [m.end() for m in _SENTENCE_START.finditer(text)]
    return starts[-1] if starts else 0


def _name_words(course: Course) -> set[str]:
    """Words of the course's own names (assignment and topic titles, the course, the instructor): a question
    may name "Programming Assignment 3: Word Frequency Counter" again without repeating itself."""
    names = [course.code, course.title, course.instructor_name]
    names += [a.title for a in course.assignments] + [t.title for t in course.topics]
    return {w for n in names for w in _words(n)}


def _without_names(runs: set[tuple[str, ...]], names: Collection[str], limit: int) -> set[tuple[str, ...]]:
    """The full-length runs with at least three words besides the course's own names (and the shorter
    runs, which the holds use). A run that is mostly a name is neither a repeat nor a leak: a reply that
    writes out "Lab 6 Report: Acid-Base Titration of Vinegar" names the assignment the student sees on the
    syllabus."""
    return {r for r in runs if len(r) < limit or sum(w not in names for w in r) >= 3}


def _assignment_names(course: Course) -> list[tuple[str, ...]]:
    """Each assignment's title and the part before its colon, as words (what ``assignments_named`` finds)."""
    names = {tuple(_words(n)) for a in course.assignments for n in (a.title, a.title.split(":")[0])}
    return [n for n in names if n]


def _name_prefix(words: Sequence[str], names: Sequence[tuple[str, ...]]) -> int:
    """How many of the last words are the unfinished start of an assignment's name."""
    for k in range(min(len(words), max((len(n) for n in names), default=0)), 0, -1):
        tail = tuple(words[-k:])
        if any(len(n) > k and n[:k] == tail for n in names):
            return k
    return 0
