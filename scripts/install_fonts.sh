#!/usr/bin/env bash
# Free Latin font families from Debian for `rare synth --system-fonts` (the shipped model's training data).
# Run as root once: bash scripts/install_fonts.sh. The fonts land in /usr/share/fonts.
set -euo pipefail
FONT_PACKAGES=(
  fonts-dejavu fonts-liberation2 fonts-freefont-ttf fonts-urw-base35 fonts-croscore fonts-crosextra-carlito
  fonts-crosextra-caladea fonts-noto-core fonts-roboto-unhinted fonts-roboto-slab fonts-open-sans fonts-lato
  fonts-cantarell fonts-texgyre fonts-linuxlibertine fonts-ebgaramond fonts-cabin fonts-comfortaa fonts-dosis
  fonts-inter fonts-karla fonts-league-spartan fonts-lobster fonts-lobstertwo fonts-dancingscript
  fonts-kaushanscript fonts-bebas-neue fonts-national-park fonts-roadgeek fonts-yanone-kaffeesatz
  fonts-quicksand fonts-play fonts-opendin fonts-b612 fonts-tuffy fonts-vollkorn fonts-quattrocento fonts-go
  fonts-hack fonts-jetbrains-mono fonts-courier-prime fonts-aenigma fonts-dustin fonts-sjfonts
  fonts-humor-sans fonts-comic-neue fonts-allerta fonts-averia-gwf fonts-averia-sans-gwf fonts-averia-serif-gwf
  fonts-beteckna fonts-cherrybomb fonts-rocknroll fonts-century-catalogue fonts-blankenburg fonts-manrope
  fonts-sora fonts-junction fonts-okolaks fonts-breip fonts-fantasma fonts-engadget fonts-isabella fonts-linex
  fonts-oxygen fonts-paratype fonts-arkpandora fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis
  fonts-adf-gillius fonts-adf-ikarius fonts-adf-irianis fonts-adf-libris fonts-adf-mekanus fonts-adf-oldania
  fonts-adf-romande fonts-adf-solothurn fonts-adf-switzera fonts-adf-tribun fonts-adf-universalis
  fonts-adf-verana fonts-stix fonts-tiresias fonts-train fonts-radisnoir fonts-ocr-a fonts-ocr-b fonts-osifont
  fonts-clear-sans fonts-anonymous-pro fonts-apropal fonts-arapey fonts-bajaderka fonts-cabinsketch
  fonts-compagnon fonts-eurofurence fonts-ferrite-core fonts-goudybookletter fonts-jura fonts-klee
  fonts-kristi fonts-leckerli-one fonts-millimetre fonts-mononoki fonts-prociono fonts-rufscript
  fonts-solide-mirage fonts-staypuft fonts-summersby fonts-tomsontalks fonts-mplus fonts-femkeklaver
  fonts-gnutypewriter fonts-routed-gothic fonts-stick fonts-fanwood fonts-lindenhill fonts-oldstandard
)
if [ "$(id -u)" != 0 ]; then echo "install_fonts.sh: run as root (apt-get installs ${#FONT_PACKAGES[@]} font packages)" >&2; exit 2; fi
apt-get update -qq
# One by one, so a package that a Debian release lacks is reported and skipped instead of failing all.
available=()
for package in "${FONT_PACKAGES[@]}"; do
  if apt-cache show "$package" >/dev/null 2>&1; then available+=("$package"); else echo "skipped (not in this Debian): $package" >&2; fi
done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${available[@]}"
echo "installed ${#available[@]} font packages into /usr/share/fonts"
